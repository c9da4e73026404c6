//! The repository API (`model_repository` extension): index, load with an
//! optional pinned version, unload, and the route of a model's default
//! traffic to a candidate (`preflight_rollout`), behind the repository token.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use serde_json::Value;

use crate::error::ApiError;
use crate::error::AppResult;
use crate::registry::{IndexEntry, RouteRequest};
use crate::rollout::Mode;
use crate::state::AppState;

pub(super) async fn index(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> AppResult<Json<Vec<IndexEntry>>> {
    authorize(&state, &headers)?;
    Ok(Json(state.registry.index()))
}

pub(super) async fn load(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(model): Path<String>,
    body: Body,
) -> AppResult<()> {
    // The token first: nobody without it gets a body read.
    authorize(&state, &headers)?;
    let body = super::body::read_body(body, &state).await?;
    let pin = pinned_version(&model, &body)?;
    let registry = Arc::clone(&state.registry);
    let name = model.clone();
    // Loading builds ONNX Runtime sessions: slow, blocking work.
    tokio::task::spawn_blocking(move || registry.load(&name, pin))
        .await
        .map_err(|e| ApiError::Internal(format!("model '{model}': loading failed: {e}")))??;
    tracing::info!(
        model,
        version = pin.map_or_else(|| "all".to_owned(), |v| v.to_string()),
        "model loaded through the repository API"
    );
    Ok(())
}

/// The load request's `parameters.version`, if it pins one.
fn pinned_version(model: &str, body: &[u8]) -> AppResult<Option<u64>> {
    if body.is_empty() {
        return Ok(None);
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "model '{model}': the load request is not JSON: {e}"
        ))
    })?;
    let Some(v) = request.pointer("/parameters/version") else {
        return Ok(None);
    };
    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    text.parse::<u64>().map(Some).map_err(|_| {
        ApiError::BadRequest(format!(
            "model '{model}': parameters.version must be a version number, not {v}"
        ))
    })
}

/// `POST /v2/repository/models/{m}/route`: `{"version": "3", "mode":
/// "shadow" | "canary", "percent": 10}`, or `{"mode": "off"}`.
pub(super) async fn route(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(model): Path<String>,
    body: Body,
) -> AppResult<Json<Value>> {
    authorize(&state, &headers)?;
    let body = super::body::read_body(body, &state).await?;
    let request = route_request(&model, &body)?;
    state.registry.set_route(&model, request)?;
    let answer = match request {
        RouteRequest::Off => serde_json::json!({"model_name": model, "mode": "off"}),
        RouteRequest::To {
            version,
            mode,
            percent,
        } => serde_json::json!({
            "model_name": model,
            "version": version.to_string(),
            "mode": mode,
            "percent": percent,
        }),
    };
    tracing::info!(model, route = %answer, "route set through the repository API");
    Ok(Json(answer))
}

fn route_request(model: &str, body: &[u8]) -> AppResult<RouteRequest> {
    let bad = |why: String| ApiError::BadRequest(format!("model '{model}': {why}"));
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the route request is not JSON: {e}")))?;
    let mode = match request["mode"].as_str() {
        Some("off") => return Ok(RouteRequest::Off),
        Some("shadow") => Mode::Shadow,
        Some("canary") => Mode::Canary,
        _ => {
            return Err(bad(format!(
                "mode must be \"shadow\", \"canary\" or \"off\", not {}",
                request["mode"]
            )));
        }
    };
    let v = &request["version"];
    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let version = text
        .parse::<u64>()
        .map_err(|_| bad(format!("version must be a version number, not {v}")))?;
    let percent = request["percent"]
        .as_u64()
        .filter(|p| *p <= 100)
        .ok_or_else(|| {
            bad(format!(
                "percent must be a whole number from 0 to 100, not {}",
                request["percent"]
            ))
        })?;
    Ok(RouteRequest::To {
        version,
        mode,
        percent: percent as u32,
    })
}

pub(super) async fn unload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> AppResult<()> {
    authorize(&state, &headers)?;
    state.registry.unload(&model)?;
    tracing::info!(model, "model unloaded through the repository API");
    Ok(())
}

fn authorize(state: &AppState, headers: &HeaderMap) -> AppResult<()> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.repository.authorize(authorization)
}
