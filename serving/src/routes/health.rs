//! Liveness and readiness, of the server and of each model version.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::describe;
use crate::error::{ApiError, AppResult};
use crate::model::{ModelState, Subject};
use crate::state::AppState;

/// 200 as long as the process answers HTTP.
pub(super) async fn live() {}

/// 200 once the repository is loaded and every model version in it is
/// `ready` (PROTOCOL.md); else 503, with `loading` and, once loaded, every
/// version or folder that is not ready and why (`docs/serving.md`).
pub(super) async fn server_ready(State(state): State<Arc<AppState>>) -> AppResult<()> {
    describe::server_ready(&state)
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

/// 200 when the version's main model answers; 503 when it does not, with
/// `answers` saying whether its fallback still does (`degraded`). The body
/// says which either way.
fn readiness(state: &AppState, model: &str, version: Option<&str>) -> AppResult<Json<Value>> {
    let (served, _) = state.registry.get(model, version)?;
    let ready = served.state() == ModelState::Ready;
    let number = served.manifest.model.version;
    let body = json!({
        "name": model,
        "version": number.to_string(),
        "ready": ready,
        "answers": served.state().answers(),
        "state": served.state(),
        "reason": served.failure(),
    });
    match body {
        Value::Object(details) if !ready => Err(ApiError::NotReady {
            message: format!(
                "{} is {}: {}",
                Subject::of(&served.manifest),
                served.state().as_str(),
                served.failure().unwrap_or("its main model did not load")
            ),
            details,
        }),
        body => Ok(Json(body)),
    }
}
