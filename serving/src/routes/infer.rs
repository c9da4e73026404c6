//! The one inference path of both protocols: find the version, read and
//! check the request, predict with the deadline, shape the answer, and
//! count and log the request, whatever its end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::body::read_body;
use crate::decode::Limits;
use crate::error::ApiError;
use crate::error::AppResult;
use crate::infer::{Prediction, predict};
use crate::metrics::counters::Counters;
use crate::model::{Batch, FallbackReason, Outcome, Subject};
use crate::monitor::Observation;
use crate::placement::runs_inline;
use crate::protocol::params;
use crate::registry::Routed;
use crate::rollout::Shadowing;
use crate::served::Served;
use crate::state::AppState;

/// What differs between the Open Inference Protocol (v2) and KServe v1:
/// the request's form and the answer's.
pub(super) trait Protocol {
    type Request: DeserializeOwned;
    /// What the answer needs to know of the request, checked before the
    /// model runs (v2: which outputs were asked for).
    type Plan;

    /// The request's `parameters`, where `deadline_ms` is read.
    fn parameters(request: &Self::Request) -> Option<&Map<String, Value>>;

    /// The request's id, `make`-d where it has none, for a protocol whose
    /// answer carries it; `None` for one whose answer cannot.
    fn id(request: &mut Self::Request, make: impl FnOnce() -> String) -> Option<String>;

    /// The rows to predict and the plan of the answer, or why the request
    /// does not fit the model.
    fn decode(
        served: &Served,
        request: &Self::Request,
        limits: Limits,
    ) -> AppResult<(Batch, Self::Plan)>;

    /// The answer's body.
    fn answer(
        model: &str,
        served: &Served,
        request: Self::Request,
        plan: Self::Plan,
        prediction: Prediction,
        rows: usize,
    ) -> AppResult<Response>;
}

/// One inference request that reached a loaded version.
struct Answered {
    rows: usize,
    fallback: Option<FallbackReason>,
    id: Option<String>,
    response: Response,
}

/// Serves one inference request of protocol `P` for `model`, at `version`
/// or its default.
pub(super) async fn serve<P: Protocol>(
    state: &AppState,
    model: &str,
    version: Option<&str>,
    body: Body,
) -> Response {
    let started = Instant::now();
    // A request without a version is the default traffic a route shares.
    let routed = match version {
        Some(_) => state
            .registry
            .get(model, version)
            .map(|(served, _)| Routed {
                served,
                shadow: None,
            }),
        None => state.registry.route_default(model),
    };
    let Routed { served, shadow } = match routed {
        Ok(routed) => routed,
        Err(error) => {
            let counters = &state.metrics.unmatched;
            let version = version.unwrap_or("default");
            return observe(counters, model, version, started, Err(error));
        }
    };
    let outcome = answer::<P>(state, model, &served, shadow, body).await;
    let version = served.manifest.model.version.to_string();
    observe(&served.counters, model, &version, started, outcome)
}

async fn answer<P: Protocol>(
    state: &AppState,
    model: &str,
    served: &Arc<Served>,
    shadow: Option<Shadowing>,
    body: Body,
) -> AppResult<Answered> {
    let mut request: P::Request = read_request(body, state, served).await?;
    let id = P::id(&mut request, || state.monitor.id());
    let deadline = deadline(served, P::parameters(&request))?;
    let (batch, plan) = P::decode(served, &request, state.limits)?;
    let rows = batch.rows;
    let batch = Arc::new(batch);
    let admitted = (state.admission)
        .admit(&served.load, rows)
        .await
        .map_err(|shed| shed.for_model(&Subject::of(&served.manifest)))?;
    let (admission, until) = (&state.admission, admitted.wait_until);
    let prediction = predict(
        admission,
        Arc::clone(served),
        Arc::clone(&batch),
        deadline,
        until,
    )
    .await?;
    let fallback = prediction.fallback;
    let outputs = served.monitor.scoring.columns(&prediction.outputs);
    let response = P::answer(model, served, request, plan, prediction, rows)?;
    if let Some(shadowing) = shadow {
        let (batch, outputs) = (Arc::clone(&batch), outputs.clone());
        state
            .shadows
            .submit(&state.admission, shadowing, batch, outputs);
    }
    state.monitor.observe(Observation {
        version: Arc::clone(&served.monitor),
        model: model.to_owned(),
        id: id.clone(),
        batch,
        outputs,
    });
    Ok(Answered {
        rows,
        fallback,
        id,
        response,
    })
}

/// Counts and logs one inference request, and gives its response.
fn observe(
    counters: &Counters,
    model: &str,
    version: &str,
    started: Instant,
    outcome: AppResult<Answered>,
) -> Response {
    let latency = started.elapsed();
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    match outcome {
        Ok(answered) => {
            let Answered {
                rows,
                fallback,
                id,
                response,
            } = answered;
            counters.record(Outcome::Ok, rows, fallback, latency);
            tracing::debug!(
                model,
                version,
                id = id.as_deref().unwrap_or(""),
                rows,
                latency_us = micros,
                outcome = Outcome::Ok.as_str(),
                fallback = fallback.map_or("none", FallbackReason::as_str),
                "infer"
            );
            response
        }
        Err(error) => {
            counters.record(error.outcome(), 0, None, latency);
            // A client's mistake or a shed request is counted, and logged
            // only at debug: a client must not be able to flood the log.
            macro_rules! failed {
                ($level:ident) => {
                    tracing::$level!(
                        model,
                        version,
                        latency_us = micros,
                        outcome = error.outcome().as_str(),
                        status = error.status().as_u16(),
                        %error,
                        "infer failed"
                    )
                };
            }
            if error.status().is_server_error() && error.outcome() != Outcome::Shed {
                failed!(warn);
            } else {
                failed!(debug);
            }
            error.into_response()
        }
    }
}

/// The main model's budget: the manifest's `deadline_ms`, lowered by the
/// request's `parameters.deadline_ms`.
fn deadline(
    served: &Served,
    parameters: Option<&Map<String, Value>>,
) -> AppResult<Option<Duration>> {
    let configured = served.manifest.runtime.deadline_ms;
    let requested = match parameters.and_then(|p| p.get(params::DEADLINE_MS)) {
        None => None,
        Some(value) => Some(value.as_u64().ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{}: parameters.{} must be a whole number of milliseconds, not {value}",
                Subject::of(&served.manifest),
                params::DEADLINE_MS
            ))
        })?),
    };
    let ms = match (configured, requested) {
        (Some(c), Some(r)) => Some(c.min(r)),
        (c, r) => c.or(r),
    };
    Ok(ms.map(Duration::from_millis))
}

/// The `parameters` of an answer from the fallback.
pub(super) fn fallback_parameters(reason: Option<FallbackReason>) -> Option<Map<String, Value>> {
    reason.map(|r| {
        let mut p = Map::new();
        p.insert(params::FALLBACK.into(), Value::Bool(true));
        p.insert(
            params::FALLBACK_REASON.into(),
            Value::String(r.as_str().into()),
        );
        p
    })
}

/// Reads and parses a request within the server's size and time limits;
/// a request that could not start in time is shed before the parse.
async fn read_request<T: DeserializeOwned>(
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
