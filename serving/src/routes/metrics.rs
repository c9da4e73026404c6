//! `GET /metrics`: the OpenMetrics text exposition.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::AppState;

pub(super) async fn scrape(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let text = crate::metrics::render(state);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
