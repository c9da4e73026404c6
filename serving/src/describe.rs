//! What the server says of itself and of its models, whatever the
//! protocol: metadata and readiness.

use std::sync::atomic::Ordering;

use preflight_bundle::Feature;
use serde_json::{Map, Value};

use crate::error::{ApiError, AppResult};
use crate::protocol::{ModelMetadata, ServerMetadata, TensorMetadata};
use crate::state::AppState;

/// `GET /v2`, and gRPC's `ServerMetadata`.
pub(crate) fn server() -> ServerMetadata {
    ServerMetadata {
        name: "preflight-serve",
        version: env!("CARGO_PKG_VERSION"),
        extensions: vec![
            "model_repository",
            "preflight_fallback",
            "preflight_nulls",
            "preflight_monitor",
            "preflight_rollout",
        ],
    }
}

/// A model version's metadata, from its manifest.
pub(crate) fn model(
    state: &AppState,
    model: &str,
    version: Option<&str>,
) -> AppResult<ModelMetadata> {
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
    Ok(ModelMetadata {
        name: model.to_owned(),
        versions: versions.iter().map(u64::to_string).collect(),
        platform: state.registry.platform(),
        inputs: tensors(&served.manifest.inputs),
        outputs: tensors(&served.manifest.outputs),
        state: served.state(),
        degraded_reason: served.failure().map(str::to_owned),
    })
}

/// Whether the server is ready: its repository loaded and every version
/// in it `ready`, and not draining; else what is not.
pub(crate) fn server_ready(state: &AppState) -> AppResult<()> {
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
