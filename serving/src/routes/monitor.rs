//! Preflight's monitoring extension: a version's drift and live error
//! (`GET .../monitor`), and the targets clients observed (`POST .../feedback`).
//! See docs/serving.md, "Monitoring".

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};

use super::body::read_body;
use crate::error::{ApiError, AppResult};
use crate::monitor::{FeedbackItem, FeedbackReceipt, MonitorReport};
use crate::state::AppState;

pub(super) async fn version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> AppResult<Json<MonitorReport>> {
    let (served, _) = state.registry.get(&model, Some(&version))?;
    let number = served.manifest.model.version;
    // The report counts every request answered before it was asked for.
    state.monitor.caught_up().await;
    Ok(Json(served.monitor.report(&model, number)))
}

/// One target, or a list of them.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum FeedbackBody {
    Many { feedback: Vec<FeedbackItem> },
    One(FeedbackItem),
}

pub(super) async fn feedback(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    body: Body,
) -> AppResult<Json<FeedbackReceipt>> {
    // The model must be served; which version answered is the id's to say.
    state.registry.get(&model, None)?;
    let bytes = read_body(body, &state).await?;
    let items = match serde_json::from_slice::<FeedbackBody>(&bytes) {
        Ok(FeedbackBody::Many { feedback }) => feedback,
        Ok(FeedbackBody::One(item)) => vec![item],
        Err(e) => {
            return Err(ApiError::BadRequest(format!(
                "model '{model}': the body is not feedback ({e}): send {{\"id\": \"...\", \
                 \"target\": 12.5}}, a list of targets for a batch, or {{\"feedback\": [...]}}"
            )));
        }
    };
    if items.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "model '{model}': the feedback list is empty"
        )));
    }
    let receipt = state.monitor.feedback(model, items).await?;
    Ok(Json(receipt))
}
