//! KServe v1 `POST /v1/models/{m}:predict`: `{"instances": [{...}, ...]}`
//! in, `{"predictions": [...]}` out.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::infer::read_request;
use crate::decode::{Limits, decode_instances};
use crate::error::ApiError;
use crate::error::AppResult;
use crate::infer::Prediction;
use crate::model::{Batch, Subject, TensorData};
use crate::request::{Protocol, fallback_parameters, serve};
use crate::served::Served;
use crate::state::AppState;

pub(super) async fn predict(
    State(state): State<Arc<AppState>>,
    Path(target): Path<String>,
    body: Body,
) -> Response {
    match target.strip_suffix(":predict") {
        Some(model) => serve::<V1>(&state, model, None, body)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        None => {
            let model = target
                .split_once(':')
                .map_or(target.as_str(), |(model, _)| model);
            ApiError::NotFound(format!(
                "no such route '/v1/models/{target}': KServe v1 is served for \
                 '/v1/models/{model}:predict' only"
            ))
            .into_response()
        }
    }
}

#[derive(serde::Deserialize)]
struct V1Request {
    instances: Vec<Value>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

struct V1;

/// `parameters.predict_proba = true`: a classifier's answer is each row's
/// probabilities instead of its label, as KServe's scikit-learn server
/// answers for `predict_proba`.
const PREDICT_PROBA: &str = "predict_proba";

impl Protocol for V1 {
    type Input = Body;
    type Request = V1Request;
    /// For a classifier, the output every prediction is: the label, or the
    /// probabilities for `predict_proba`.
    type Plan = Option<usize>;
    type Answer = Response;

    async fn read(state: &AppState, served: &Served, body: Body) -> AppResult<V1Request> {
        read_request(body, state, served).await
    }

    fn parameters(request: &V1Request) -> Option<&Map<String, Value>> {
        request.parameters.as_ref()
    }

    /// KServe v1's answer has no id: feedback needs the v2 protocol.
    fn id(_: &mut V1Request, _: impl FnOnce() -> String) -> Option<String> {
        None
    }

    fn decode(
        served: &Served,
        request: &V1Request,
        limits: Limits,
    ) -> AppResult<(Batch, Option<usize>)> {
        let proba = request
            .parameters
            .as_ref()
            .and_then(|p| p.get(PREDICT_PROBA))
            .is_some_and(|v| *v == Value::Bool(true));
        let classifier = served.manifest.classifier();
        if proba && classifier.is_none() {
            return Err(ApiError::BadRequest(format!(
                "{}: parameters.predict_proba applies to a classifier",
                Subject::of(&served.manifest)
            )));
        }
        let plan = classifier.map(|c| if proba { c.probabilities } else { c.label });
        Ok((
            decode_instances(&served.manifest, &request.instances, limits)?,
            plan,
        ))
    }

    /// One prediction per instance: the value itself for a model with one
    /// output (a classifier's label, or its probabilities for
    /// `predict_proba`), else an object by output name.
    fn answer(
        _model: &str,
        served: &Served,
        _request: V1Request,
        plan: Option<usize>,
        prediction: Prediction,
        rows: usize,
    ) -> AppResult<Response> {
        let names: Vec<&str> = served
            .manifest
            .outputs
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        let widths: Vec<usize> = served.manifest.outputs.iter().map(|o| o.width()).collect();
        let mut columns: Vec<Option<Vec<Value>>> = prediction
            .outputs
            .into_iter()
            .zip(&widths)
            .map(|(o, &width)| o.map(|data| rows_of(to_json_values(&data), width)))
            .collect();
        if let Some(only) = plan {
            columns = vec![columns.get_mut(only).and_then(Option::take)];
        }
        let predictions: Vec<Value> = (0..rows)
            .map(|row| {
                if let [Some(only)] = columns.as_slice() {
                    return only.get(row).cloned().unwrap_or(Value::Null);
                }
                let fields = names.iter().zip(&columns).filter_map(|(name, col)| {
                    Some(((*name).to_owned(), col.as_ref()?.get(row)?.clone()))
                });
                Value::Object(fields.collect())
            })
            .collect();
        let mut body = json!({ "predictions": predictions });
        if let Some(parameters) = fallback_parameters(prediction.fallback) {
            body["parameters"] = Value::Object(parameters);
        }
        Ok(Json(body).into_response())
    }
}

/// Values `width` to a row, as one list per row where `width` is above 1.
fn rows_of(values: Vec<Value>, width: usize) -> Vec<Value> {
    if width <= 1 {
        return values;
    }
    values
        .chunks(width)
        .map(|row| Value::Array(row.to_vec()))
        .collect()
}

fn to_json_values(data: &TensorData) -> Vec<Value> {
    match data {
        // The shortest decimal that reads back as the same f32, as on the v2 route.
        TensorData::F32(v) => v
            .iter()
            .map(|&x| {
                x.to_string()
                    .parse::<f64>()
                    .map_or(Value::Null, |w| json!(w))
            })
            .collect(),
        TensorData::F64(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::I64(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::I32(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::Text(v) => v.iter().map(|x| json!(x)).collect(),
    }
}
