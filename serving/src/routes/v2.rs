//! Open Inference Protocol (KServe v2) inference: tensors in, tensors out.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::infer::{Protocol, fallback_parameters, serve};
use crate::decode::{Limits, decode_tensors};
use crate::error::ApiError;
use crate::error::AppResult;
use crate::infer::Prediction;
use crate::model::{Batch, Subject};
use crate::protocol::{InferRequest, InferResponse, ResponseOutput};
use crate::served::Served;
use crate::state::AppState;

pub(super) async fn infer(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    body: Body,
) -> Response {
    serve::<V2>(&state, &model, None, body).await
}

pub(super) async fn infer_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    body: Body,
) -> Response {
    serve::<V2>(&state, &model, Some(&version), body).await
}

struct V2;

impl Protocol for V2 {
    type Request = InferRequest;
    /// The indices of the outputs asked for, in the order asked.
    type Plan = Vec<usize>;

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
        let names = request
            .outputs
            .as_ref()
            .map(|o| o.iter().map(|o| o.name.as_str()).collect());
        let selected = select_outputs(served, names)?;
        Ok((decode_tensors(&served.manifest, request, limits)?, selected))
    }

    fn answer(
        model: &str,
        served: &Served,
        request: InferRequest,
        selected: Vec<usize>,
        prediction: Prediction,
        rows: usize,
    ) -> AppResult<Response> {
        let Prediction {
            outputs: mut values,
            fallback,
        } = prediction;
        let mut outputs = Vec::with_capacity(selected.len());
        for index in selected {
            let feature = &served.manifest.outputs[index];
            let Some(data) = values[index].take() else {
                return Err(ApiError::Unavailable(format!(
                    "{}: the fallback answered and has no value for output '{}'",
                    Subject::of(&served.manifest),
                    feature.name
                )));
            };
            outputs.push(ResponseOutput {
                name: feature.name.clone(),
                shape: vec![rows, data.len() / rows.max(1)],
                datatype: feature.datatype.as_str(),
                data,
            });
        }
        let response = InferResponse {
            model_name: model.to_owned(),
            model_version: served.manifest.model.version.to_string(),
            id: request.id,
            parameters: fallback_parameters(fallback),
            outputs,
        };
        Ok(Json(response).into_response())
    }
}

/// Indices of the requested outputs, all of them when none are named.
fn select_outputs(served: &Served, names: Option<Vec<&str>>) -> AppResult<Vec<usize>> {
    let Some(names) = names else {
        return Ok((0..served.manifest.outputs.len()).collect());
    };
    names
        .into_iter()
        .map(|name| {
            served.manifest.output(name).map(|(i, _)| i).ok_or_else(|| {
                let known: Vec<&str> = served
                    .manifest
                    .outputs
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect();
                ApiError::BadRequest(format!(
                    "{}: output '{name}' is not an output of the model (outputs: {})",
                    Subject::of(&served.manifest),
                    known.join(", ")
                ))
            })
        })
        .collect()
}
