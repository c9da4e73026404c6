//! The HTTP API: the Open Inference Protocol REST routes and Preflight's
//! extensions (see docs/serving.md), one module per part of the API.
//!
//! Every handler answers a client's mistake with an [`ApiError`], whose
//! `status` is the only place a status code is chosen.

mod body;
mod health;
mod infer;
mod metadata;
mod metrics;
mod monitor;
mod repository;
mod v1;
mod v2;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::AppState;

/// The server's routes, for `axum::serve` or `tower::ServiceExt::oneshot`.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2", get(metadata::server))
        .route("/v2/health/live", get(health::live))
        .route("/v2/health/ready", get(health::server_ready))
        .route("/v2/models/{model}", get(metadata::model))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(metadata::model_version),
        )
        .route("/v2/models/{model}/ready", get(health::model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(health::model_version_ready),
        )
        .route("/v2/models/{model}/infer", post(v2::infer))
        .route("/v2/models/{model}/feedback", post(monitor::feedback))
        .route(
            "/v2/models/{model}/versions/{version}/monitor",
            get(monitor::version),
        )
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(v2::infer_version),
        )
        .route("/v2/repository/index", post(repository::index))
        .route("/v2/repository/models/{model}/load", post(repository::load))
        .route(
            "/v2/repository/models/{model}/unload",
            post(repository::unload),
        )
        .route(
            "/v2/repository/models/{model}/route",
            post(repository::route),
        )
        .route("/v1/models/{target}", post(v1::predict))
        .route("/metrics", get(metrics::scrape))
        .fallback(|| async {
            ApiError::NotFound("no such route; see GET /v2 and docs/serving.md".to_owned())
        })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("this route does not take that method".to_owned())
        })
        .with_state(state)
}
