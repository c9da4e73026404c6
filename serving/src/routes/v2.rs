//! Open Inference Protocol (KServe v2) inference over REST: tensors in,
//! tensors out, as JSON.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::infer::read_request;
use crate::decode::Limits;
use crate::error::AppResult;
use crate::infer::Prediction;
use crate::model::Batch;
use crate::protocol::InferRequest;
use crate::request::{Protocol, serve};
use crate::served::Served;
use crate::state::AppState;
use crate::v2;

pub(super) async fn infer(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    body: Body,
) -> Response {
    let answer = serve::<V2>(&state, &model, None, body).await;
    answer.unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn infer_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    body: Body,
) -> Response {
    let answer = serve::<V2>(&state, &model, Some(&version), body).await;
    answer.unwrap_or_else(IntoResponse::into_response)
}

struct V2;

impl Protocol for V2 {
    type Input = Body;
    type Request = InferRequest;
    /// The indices of the outputs asked for, in the order asked.
    type Plan = Vec<usize>;
    type Answer = Response;

    async fn read(state: &AppState, served: &Served, body: Body) -> AppResult<InferRequest> {
        read_request(body, state, served).await
    }

    fn parameters(request: &InferRequest) -> Option<&Map<String, Value>> {
        request.parameters.as_ref()
    }

    /// Echoed, or made and returned: the key of `/feedback`.
    fn id(request: &mut InferRequest, make: impl FnOnce() -> String) -> Option<String> {
        Some(request.id.get_or_insert_with(make).clone())
    }

    fn decode(
        served: &Served,
        request: &InferRequest,
        limits: Limits,
    ) -> AppResult<(Batch, Vec<usize>)> {
        v2::decode(served, request, limits)
    }

    fn answer(
        model: &str,
        served: &Served,
        request: InferRequest,
        selected: Vec<usize>,
        prediction: Prediction,
        rows: usize,
    ) -> AppResult<Response> {
        let response = v2::answer(model, served, request.id, selected, prediction, rows)?;
        Ok(Json(response).into_response())
    }
}
