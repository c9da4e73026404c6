//! `GET /metrics`: the Prometheus text exposition.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;

pub(super) async fn scrape(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let text = (state.metrics).render(
        &state.registry,
        &state.admission,
        &state.monitor,
        state.log.as_ref(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
