//! Server and model metadata.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};

use crate::describe;
use crate::error::AppResult;
use crate::protocol::{ModelMetadata, ServerMetadata};
use crate::state::AppState;

pub(super) async fn server() -> Json<ServerMetadata> {
    Json(describe::server())
}

pub(super) async fn model(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> AppResult<Json<ModelMetadata>> {
    describe::model(&state, &model, None).map(Json)
}

pub(super) async fn model_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> AppResult<Json<ModelMetadata>> {
    describe::model(&state, &model, Some(&version)).map(Json)
}
