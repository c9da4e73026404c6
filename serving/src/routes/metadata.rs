//! Server and model metadata.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use preflight_bundle::Feature;

use crate::error::AppResult;
use crate::protocol::{ModelMetadata, ServerMetadata, TensorMetadata};
use crate::state::AppState;

pub(super) async fn server() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "preflight-serve",
        version: env!("CARGO_PKG_VERSION"),
        extensions: vec![
            "model_repository",
            "preflight_fallback",
            "preflight_nulls",
            "preflight_monitor",
            "preflight_rollout",
        ],
    })
}

pub(super) async fn model(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> AppResult<Json<ModelMetadata>> {
    metadata(&state, &model, None)
}

pub(super) async fn model_version(
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
    let tensors = |features: &[Feature]| {
        features
            .iter()
            .map(|f| TensorMetadata {
                name: f.name.clone(),
                datatype: f.datatype.as_str(),
                // A classifier's probabilities are `[-1, K]`; every other
                // tensor is a column.
                shape: f.shape.clone().unwrap_or_else(|| vec![-1, 1]),
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
