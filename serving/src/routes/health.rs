//! Liveness and readiness, of the server and of each model version.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Map, Value, json};

use super::{AppResult, AppState};
use crate::error::ApiError;

/// 200 as long as the process answers HTTP.
pub(super) async fn live() {}

/// 200 once the initial load of the repository has finished.
pub(super) async fn server_ready(State(state): State<Arc<AppState>>) -> AppResult<()> {
    if state.ready.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(ApiError::NotReady {
            message: "the model repository is still loading".to_owned(),
            details: Map::new(),
        })
    }
}

pub(super) async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> AppResult<Json<Value>> {
    readiness(&state, &model, None)
}

pub(super) async fn model_version_ready(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> AppResult<Json<Value>> {
    readiness(&state, &model, Some(&version))
}

/// 200 when the version answers (the main model, or only its fallback:
/// `degraded`), 503 when it cannot; the body says which either way.
fn readiness(state: &AppState, model: &str, version: Option<&str>) -> AppResult<Json<Value>> {
    let (served, _) = state.registry.get(model, version)?;
    let answers = served.state().answers();
    let number = served.manifest.model.version;
    let body = json!({
        "name": model,
        "version": number.to_string(),
        "ready": answers,
        "state": served.state(),
        "reason": served.failure(),
    });
    match body {
        Value::Object(details) if !answers => Err(ApiError::NotReady {
            message: format!(
                "model '{model}' version {number} cannot answer: {}",
                served
                    .failure()
                    .unwrap_or("it has no main model and no fallback")
            ),
            details,
        }),
        body => Ok(Json(body)),
    }
}
