//! Reading a REST inference request: its body within the server's size
//! and time limits, then JSON. What follows is every protocol's
//! (`crate::request`).

use std::time::Instant;

use axum::body::{Body, Bytes};
use serde::de::DeserializeOwned;

use super::body::read_body;
use crate::error::{ApiError, AppResult};
use crate::model::Subject;
use crate::placement::runs_inline;
use crate::served::Served;
use crate::state::AppState;

/// Reads and parses a request within the server's size and time limits;
/// a request that could not start in time is shed before the parse.
pub(super) async fn read_request<T: DeserializeOwned>(
    body: Body,
    state: &AppState,
    served: &Served,
) -> AppResult<T> {
    let who = Subject::of(&served.manifest);
    let bytes: Bytes = read_body(body, state).await.map_err(|e| match e {
        ApiError::PayloadTooLarge(m) => ApiError::PayloadTooLarge(format!("{who}: {m}")),
        ApiError::BadRequest(m) => ApiError::BadRequest(format!("{who}: {m}")),
        ApiError::Timeout(m) => ApiError::Timeout(format!("{who}: {m}")),
        other => other,
    })?;
    // Under overload most requests are shed: a model whose every run takes
    // a slot sheds before the parse, the costliest step of a request.
    let until = Instant::now() + state.admission.limits().queue_wait;
    if !runs_inline(&served.load, 1)
        && let Some(shed) = state.admission.hopeless(until, served.load.expected(1))
    {
        return Err(shed.for_model(&who));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let hint = non_json_number_hint(&bytes, &e);
        ApiError::BadRequest(format!("{who}: the body is not a valid request: {e}{hint}"))
    })
}

/// Clients that serialise NumPy (tritonclient's JSON mode, for one) write NaN
/// and Infinity as bare tokens; say what to send instead.
fn non_json_number_hint(body: &[u8], error: &serde_json::Error) -> &'static str {
    let line_start: usize = body
        .split(|&b| b == b'\n')
        .take(error.line().saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    let at = &body[(line_start + error.column().saturating_sub(1)).min(body.len())..];
    let at = at.strip_prefix(b"-").unwrap_or(at);
    if at.starts_with(b"NaN") || at.starts_with(b"Infinity") {
        " (NaN and Infinity are not JSON: send null for a missing value of a nullable input)"
    } else {
        ""
    }
}
