//! Liveness and readiness, of the server and of each model version.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, AppResult};
use crate::model::{ModelState, Subject};
use crate::state::AppState;

/// 200 as long as the process answers HTTP.
pub(super) async fn live() {}

/// 200 once the repository is loaded and every model version in it is
/// `ready` (PROTOCOL.md); else 503, with `loading` and, once loaded, every
/// version or folder that is not ready and why (`docs/serving.md`).
pub(super) async fn server_ready(State(state): State<Arc<AppState>>) -> AppResult<()> {
    if state.draining.load(Ordering::Acquire) {
        let mut details = Map::new();
        details.insert("draining".to_owned(), Value::Bool(true));
        return Err(ApiError::NotReady {
            message: "the server is stopping: it still answers while it drains, but should be \
                sent no new traffic"
                .to_owned(),
            details,
        });
    }
    if !state.ready.load(Ordering::Acquire) {
        let mut details = Map::new();
        details.insert("loading".to_owned(), Value::Bool(true));
        return Err(ApiError::NotReady {
            message: "the model repository is still loading".to_owned(),
            details,
        });
    }
    let unready = state.registry.unready();
    if unready.is_empty() {
        return Ok(());
    }
    // PROTOCOL.md's shape: `"<m>/<v>": "<state>: <reason>"`.
    let models: Map<String, Value> = unready
        .iter()
        .map(|u| {
            let key = match &u.version {
                Some(v) => format!("{}/{v}", u.model),
                None => u.model.clone(),
            };
            (key, Value::String(format!("{}: {}", u.state, u.reason)))
        })
        .collect();
    let named: Vec<String> = models
        .iter()
        .map(|(key, why)| format!("{key} {}", why.as_str().unwrap_or_default()))
        .collect();
    let mut details = Map::new();
    details.insert("loading".to_owned(), Value::Bool(false));
    details.insert("models".to_owned(), Value::Object(models));
    Err(ApiError::NotReady {
        message: format!("not ready: {}", named.join("; ")),
        details,
    })
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
