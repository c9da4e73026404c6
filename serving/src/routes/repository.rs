//! The repository API (`model_repository` extension): index, load with an
//! optional pinned version, and unload, behind the repository token.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use serde_json::Value;

use super::{AppResult, AppState};
use crate::RepositoryAccess;
use crate::error::ApiError;
use crate::registry::IndexEntry;

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
    let body = super::infer::read_body(body, &state).await?;
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
    let token = match &state.repository {
        RepositoryAccess::Open => return Ok(()),
        RepositoryAccess::Off => {
            return Err(ApiError::Forbidden(
                "the repository API is off: start the server with --repository-token (or \
                PREFLIGHT_REPOSITORY_TOKEN), or --open-repository-api on a trusted network"
                    .to_owned(),
            ));
        }
        RepositoryAccess::Token(token) => token,
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // In constant time, so that the time of a refusal says nothing of how
    // much of a guess was right.
    let matches = given.is_some_and(|given| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            given.as_bytes(),
            token.as_bytes(),
        ))
    });
    if matches {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "the repository API needs 'Authorization: Bearer <token>' with the server's token"
                .to_owned(),
        ))
    }
}
