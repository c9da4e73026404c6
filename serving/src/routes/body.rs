//! Reading a request's body within its bounds (`BodyLimits`): a body too
//! large, too slow, unreadable or cut short by a shutdown becomes the
//! `ApiError` its client reads, and is counted (`Closed`).

use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;

use crate::config::BodyLimits;
use crate::error::{ApiError, AppResult};
use crate::metrics::connections::Closed;
use crate::state::AppState;

/// How long the rest of a refused body is read and thrown away, so that a
/// client still sending it reads the refusal instead of a broken pipe, as
/// servers do with a lingering close; past it, the connection is closed.
const LINGER: Duration = Duration::from_secs(5);

/// Reads a body within `state.body`: 413 when it is longer, 408 when it
/// does not arrive in time (a client that stalls holds a connection and its
/// buffers), 400 when it cannot be read (a broken chunked encoding, a
/// client gone mid-body), 503 when the drain ends while it is still
/// arriving. Each is counted.
pub(super) async fn read_body(body: Body, state: &AppState) -> AppResult<Bytes> {
    let limits = state.body;
    let counted = |why: Closed, error: ApiError| {
        state.metrics.connections.count(why);
        error
    };
    // A declared length over the limit is refused without keeping a byte.
    if axum::body::HttpBody::size_hint(&body).lower() > limits.max_bytes as u64 {
        discard(body).await;
        return Err(counted(Closed::BodyTooLarge, too_large(limits)));
    }
    let mut stopping = state.stopping.subscribe();
    let read = tokio::select! {
        read = tokio::time::timeout(limits.timeout, read_within(body, limits)) => read,
        _ = stopping.wait_for(|stop| *stop) => {
            return Err(counted(
                Closed::Stopping,
                ApiError::Unavailable(
                    "the server is stopping and the request body had not arrived: send it \
                     again to another instance"
                        .to_owned(),
                ),
            ));
        }
    };
    let slow = |why: String| counted(Closed::BodyTimeout, ApiError::Timeout(why));
    let read = read.map_err(|_| {
        slow(format!(
            "the request body did not arrive within {} s",
            limits.timeout.as_secs_f64()
        ))
    })?;
    read.map_err(|error| match error {
        BodyError::TooLarge => counted(Closed::BodyTooLarge, too_large(limits)),
        BodyError::Idle => slow(format!(
            "no byte of the request body arrived for {} s",
            limits.idle.as_secs_f64()
        )),
        BodyError::Unreadable(why) => counted(
            Closed::BodyUnreadable,
            ApiError::BadRequest(format!("the request body could not be read: {why}")),
        ),
    })
}

/// Why a body was not read.
enum BodyError {
    TooLarge,
    Idle,
    Unreadable(String),
}

/// The body's bytes, up to `limits.max_bytes`, each piece within
/// `limits.idle` of the last; past the size, the rest is read and discarded
/// before the body is refused.
async fn read_within(mut body: Body, limits: BodyLimits) -> Result<Bytes, BodyError> {
    // A body in one frame, the common case, is kept as it came: no copy.
    let mut frames: Vec<Bytes> = Vec::new();
    let mut length = 0;
    loop {
        let frame = tokio::time::timeout(limits.idle, body.frame())
            .await
            .map_err(|_| BodyError::Idle)?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| BodyError::Unreadable(e.into_inner().to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        length += data.len();
        if length > limits.max_bytes {
            discard(body).await;
            return Err(BodyError::TooLarge);
        }
        frames.push(data);
    }
    Ok(match frames.len() {
        0 => Bytes::new(),
        1 => frames.swap_remove(0),
        _ => Bytes::from(frames.concat()),
    })
}

async fn discard(mut body: Body) {
    let _ = tokio::time::timeout(LINGER, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

fn too_large(limits: BodyLimits) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the request body is over this server's limit of {} bytes",
        limits.max_bytes
    ))
}
