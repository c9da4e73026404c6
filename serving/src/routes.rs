//! The HTTP API: the Open Inference Protocol REST routes and Preflight's
//! extensions (see docs/serving.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json_, json};

use crate::batch::{Batch, Limits, decode_instances, decode_tensors, subject};
use crate::error::ApiError;
use crate::infer::{Prediction, predict};
use crate::metrics::Metrics;
use crate::protocol::{
    InferRequest, InferResponse, ModelMetadata, ResponseOutput, ServerMetadata, TensorData,
    TensorMetadata,
};
use crate::registry::{Registry, Served};

/// Everything a handler needs.
#[derive(Debug)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    pub limits: Limits,
    pub max_body_bytes: usize,
    /// The bearer token that protects the repository API, if any.
    pub repository_token: Option<String>,
    /// Set once the initial load of the repository has finished.
    pub ready: AtomicBool,
}

/// The server's routes, for `axum::serve` or `tower::ServiceExt::oneshot`.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/{model}", get(model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(model_metadata_version),
        )
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_ready_version),
        )
        .route("/v2/models/{model}/infer", post(infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(infer_version),
        )
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{model}/load", post(repository_load))
        .route(
            "/v2/repository/models/{model}/unload",
            post(repository_unload),
        )
        .route("/v1/models/{target}", post(predict_v1))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::NotFound("no such route; see GET /v2 and docs/serving.md".to_owned())
        })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("this route does not take that method".to_owned())
        })
        .with_state(state)
}

type AppResult<T> = Result<T, ApiError>;

async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "preflight-serve",
        version: env!("CARGO_PKG_VERSION"),
        extensions: vec!["model_repository", "preflight_fallback", "preflight_nulls"],
    })
}

async fn server_ready(State(state): State<Arc<AppState>>) -> StatusCode {
    if state.ready.load(Ordering::Acquire) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> AppResult<Json<ModelMetadata>> {
    metadata(&state, &model, None)
}

async fn model_metadata_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> AppResult<Json<ModelMetadata>> {
    metadata(&state, &model, Some(&version))
}

fn metadata(
    state: &AppState,
    model: &str,
    version: Option<&str>,
) -> AppResult<Json<ModelMetadata>> {
    let (served, versions) = state.registry.get(model, version)?;
    let tensors = |features: &[preflight_bundle::Feature]| {
        features
            .iter()
            .map(|f| TensorMetadata {
                name: f.name.clone(),
                datatype: f.datatype.as_str(),
                shape: vec![-1, 1],
            })
            .collect()
    };
    Ok(Json(ModelMetadata {
        name: model.to_owned(),
        versions: versions.iter().map(u64::to_string).collect(),
        platform: state.registry.platform(),
        inputs: tensors(&served.manifest.inputs),
        outputs: tensors(&served.manifest.outputs),
        state: served.state(),
        degraded_reason: served.failure().map(str::to_owned),
    }))
}

async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> AppResult<Response> {
    readiness(&state, &model, None)
}

async fn model_ready_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> AppResult<Response> {
    readiness(&state, &model, Some(&version))
}

/// 200 when the model answers (the main model, or only its fallback:
/// `degraded`), 503 when it cannot.
fn readiness(state: &AppState, model: &str, version: Option<&str>) -> AppResult<Response> {
    let (served, _) = state.registry.get(model, version)?;
    let status = if served.state() == "unavailable" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({ "name": model, "version": served.manifest.model.version.to_string(), "ready": status == StatusCode::OK, "state": served.state(), "reason": served.failure() });
    Ok((status, Json(body)).into_response())
}

async fn infer(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    body: Body,
) -> Response {
    infer_response(&state, &model, None, body).await
}

async fn infer_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    body: Body,
) -> Response {
    infer_response(&state, &model, Some(&version), body).await
}

/// The Open Inference Protocol `infer`, with logging and metrics around it.
async fn infer_response(
    state: &AppState,
    model: &str,
    version: Option<&str>,
    body: Body,
) -> Response {
    let started = Instant::now();
    let outcome = infer_inner(state, model, version, body).await;
    observe(
        state,
        model,
        version,
        started,
        outcome
            .as_ref()
            .map(|(v, rows, fallback, _)| (v.as_str(), *rows, *fallback)),
    );
    match outcome {
        Ok((_, _, _, response)) => Json(response).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn infer_inner(
    state: &AppState,
    model: &str,
    version: Option<&str>,
    body: Body,
) -> AppResult<(String, usize, Option<&'static str>, InferResponse)> {
    let (served, _) = state.registry.get(model, version)?;
    let request: InferRequest = read_json(body, state.max_body_bytes, &served).await?;
    let who = subject(&served.manifest);
    let selected = select_outputs(
        &served,
        request
            .outputs
            .as_ref()
            .map(|o| o.iter().map(|o| o.name.as_str()).collect()),
    )?;
    let deadline = deadline(&served, request.parameters.as_ref())?;
    let batch = Arc::new(decode_tensors(&served.manifest, &request, state.limits)?);
    let rows = batch.rows;
    let prediction = predict(Arc::clone(&served), batch, deadline).await?;
    let fallback = prediction.fallback.map(|r| r.as_str());
    let mut outputs = Vec::new();
    let Prediction {
        outputs: mut values,
        fallback: reason,
    } = prediction;
    for index in selected {
        let feature = &served.manifest.outputs[index];
        match values[index].take() {
            Some(data) => outputs.push(ResponseOutput {
                name: feature.name.clone(),
                shape: vec![rows, data.len() / rows.max(1)],
                datatype: feature.datatype.as_str(),
                data,
            }),
            None => {
                return Err(ApiError::Unavailable(format!(
                    "{who}: the fallback answered and has no value for output '{}'",
                    feature.name
                )));
            }
        }
    }
    let parameters = reason.map(|r| {
        let mut p = Map::new();
        p.insert("fallback".into(), Json_::Bool(true));
        p.insert("fallback_reason".into(), Json_::String(r.as_str().into()));
        p
    });
    let version = served.manifest.model.version.to_string();
    let response = InferResponse {
        model_name: model.to_owned(),
        model_version: version.clone(),
        id: request.id,
        parameters,
        outputs,
    };
    Ok((version, rows, fallback, response))
}

/// KServe v1 `POST /v1/models/{m}:predict` with `{"instances": [{...}, ...]}`.
async fn predict_v1(
    State(state): State<Arc<AppState>>,
    Path(target): Path<String>,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Some(model) = target.strip_suffix(":predict") else {
        return ApiError::NotFound(format!(
            "no such route '/v1/models/{target}'; did you mean '/v1/models/{target}:predict'?"
        ))
        .into_response();
    };
    let outcome = predict_v1_inner(&state, model, body).await;
    observe(
        &state,
        model,
        None,
        started,
        outcome
            .as_ref()
            .map(|(v, rows, fallback, _)| (v.as_str(), *rows, *fallback)),
    );
    match outcome {
        Ok((_, _, _, body)) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn predict_v1_inner(
    state: &AppState,
    model: &str,
    body: Body,
) -> AppResult<(String, usize, Option<&'static str>, Json_)> {
    #[derive(serde::Deserialize)]
    struct V1Request {
        instances: Vec<Json_>,
        #[serde(default)]
        parameters: Option<Map<String, Json_>>,
    }
    let (served, _) = state.registry.get(model, None)?;
    let request: V1Request = read_json(body, state.max_body_bytes, &served).await?;
    let deadline = deadline(&served, request.parameters.as_ref())?;
    let batch: Arc<Batch> = Arc::new(decode_instances(
        &served.manifest,
        &request.instances,
        state.limits,
    )?);
    let rows = batch.rows;
    let prediction = predict(Arc::clone(&served), batch, deadline).await?;
    let reason = prediction.fallback;
    let names: Vec<&str> = served
        .manifest
        .outputs
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    let columns: Vec<Option<Vec<Json_>>> = prediction
        .outputs
        .into_iter()
        .map(|o| o.map(|data| to_json_values(&data)))
        .collect();
    let predictions: Vec<Json_> = (0..rows)
        .map(|row| {
            if let [Some(only)] = columns.as_slice() {
                return only.get(row).cloned().unwrap_or(Json_::Null);
            }
            let fields = names.iter().zip(&columns).filter_map(|(name, col)| {
                Some(((*name).to_owned(), col.as_ref()?.get(row)?.clone()))
            });
            Json_::Object(fields.collect())
        })
        .collect();
    let mut body = json!({ "predictions": predictions });
    if let Some(r) = reason {
        body["parameters"] = json!({ "fallback": true, "fallback_reason": r.as_str() });
    }
    Ok((
        served.manifest.model.version.to_string(),
        rows,
        reason.map(|r| r.as_str()),
        body,
    ))
}

fn to_json_values(data: &TensorData) -> Vec<Json_> {
    match data {
        // The shortest decimal that reads back as the same f32, as on the v2 route.
        TensorData::F32(v) => v
            .iter()
            .map(|&x| {
                x.to_string()
                    .parse::<f64>()
                    .map_or(Json_::Null, |w| json!(w))
            })
            .collect(),
        TensorData::F64(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::I64(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::I32(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::Text(v) => v.iter().map(|x| json!(x)).collect(),
    }
}

/// Logs and counts one inference request.
fn observe(
    state: &AppState,
    model: &str,
    version: Option<&str>,
    started: Instant,
    outcome: Result<(&str, usize, Option<&'static str>), &ApiError>,
) {
    let latency = started.elapsed();
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    match outcome {
        Ok((version, rows, fallback)) => {
            state
                .metrics
                .record(model, version, "ok", rows, fallback, latency);
            tracing::debug!(
                model,
                version,
                rows,
                latency_us = micros,
                outcome = "ok",
                fallback = fallback.unwrap_or("none"),
                "infer"
            );
        }
        Err(error) => {
            let version = version.unwrap_or("default");
            state
                .metrics
                .record(model, version, error.outcome(), 0, None, latency);
            tracing::warn!(model, version, latency_us = micros, outcome = error.outcome(), status = error.status().as_u16(), %error, "infer failed");
        }
    }
}

/// The main model's budget: the manifest's `deadline_ms`, lowered by the
/// request's `parameters.deadline_ms`.
fn deadline(
    served: &Served,
    parameters: Option<&Map<String, Json_>>,
) -> AppResult<Option<Duration>> {
    let configured = served.manifest.runtime.deadline_ms;
    let requested = match parameters.and_then(|p| p.get("deadline_ms")) {
        None => None,
        Some(value) => Some(value.as_u64().ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{}: parameters.deadline_ms must be a whole number of milliseconds, not {value}",
                subject(&served.manifest)
            ))
        })?),
    };
    let ms = match (configured, requested) {
        (Some(c), Some(r)) => Some(c.min(r)),
        (c, r) => c.or(r),
    };
    Ok(ms.map(Duration::from_millis))
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
                    subject(&served.manifest),
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// Reads a JSON body of at most `limit` bytes.
async fn read_json<T: DeserializeOwned>(body: Body, limit: usize, served: &Served) -> AppResult<T> {
    let who = subject(&served.manifest);
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::PayloadTooLarge(format!(
            "{who}: the request body is over this server's limit of {limit} bytes"
        ))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let hint = non_json_number_hint(&bytes, &e);
        ApiError::BadRequest(format!("{who}: the body is not a valid request: {e}{hint}"))
    })
}

/// Clients that serialise NumPy (tritonclient's JSON mode, for one) write NaN
/// and Infinity as bare tokens; say what to send instead.
fn non_json_number_hint(body: &[u8], error: &serde_json::Error) -> &'static str {
    let line_start: usize = body
        .split(|&b| b == b'\n')
        .take(error.line().saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    let at = &body[(line_start + error.column().saturating_sub(1)).min(body.len())..];
    let at = at.strip_prefix(b"-").unwrap_or(at);
    if at.starts_with(b"NaN") || at.starts_with(b"Infinity") {
        " (NaN and Infinity are not JSON: send null for a missing value of a nullable input)"
    } else {
        ""
    }
}

async fn repository_index(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> AppResult<Response> {
    authorize(&state, &headers)?;
    Ok(Json(state.registry.index()).into_response())
}

async fn repository_load(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(model): Path<String>,
    body: Bytes,
) -> AppResult<StatusCode> {
    authorize(&state, &headers)?;
    let pin = if body.is_empty() {
        None
    } else {
        let request: Json_ = serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "model '{model}': the load request is not JSON: {e}"
            ))
        })?;
        match request.pointer("/parameters/version") {
            None => None,
            Some(v) => {
                let text = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                Some(text.parse::<u64>().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "model '{model}': parameters.version must be a version number, not {v}"
                    ))
                })?)
            }
        }
    };
    let registry = Arc::clone(&state.registry);
    let name = model.clone();
    // Loading builds ONNX Runtime sessions: slow, blocking work.
    tokio::task::spawn_blocking(move || registry.load(&name, pin))
        .await
        .map_err(|e| ApiError::Internal(format!("model '{model}': loading failed: {e}")))??;
    tracing::info!(
        model,
        version = pin.map(|v| v.to_string()).unwrap_or_else(|| "all".into()),
        "model loaded through the repository API"
    );
    Ok(StatusCode::OK)
}

async fn repository_unload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> AppResult<StatusCode> {
    authorize(&state, &headers)?;
    state.registry.unload(&model)?;
    tracing::info!(model, "model unloaded through the repository API");
    Ok(StatusCode::OK)
}

fn authorize(state: &AppState, headers: &HeaderMap) -> AppResult<()> {
    let Some(token) = &state.repository_token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(token.as_str()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "the repository API needs 'Authorization: Bearer <token>' with the server's token"
                .to_owned(),
        ))
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(&state.registry.states());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
