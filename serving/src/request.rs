//! The one inference path of every protocol: find the version, read and
//! check the request, predict with the deadline, shape the answer, and
//! count and log the request, whatever its end. A protocol (REST's v2 and
//! v1, gRPC) says only how its request is read and its answer written.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::decode::Limits;
use crate::error::{ApiError, AppResult};
use crate::infer::{Prediction, predict};
use crate::metrics::counters::Counters;
use crate::model::{Batch, FallbackReason, Outcome, Subject};
use crate::monitor::Observation;
use crate::protocol::params;
use crate::registry::Routed;
use crate::rollout::Shadowing;
use crate::served::Served;
use crate::state::AppState;

/// What differs between protocols: how a request arrives and is read, and
/// the form of its answer.
pub(crate) trait Protocol {
    /// The request as it arrives: a body still to read, or a message.
    type Input: Send;
    type Request: Send;
    /// What the answer needs to know of the request, checked before the
    /// model runs (v2: which outputs were asked for).
    type Plan: Send;
    type Answer;

    /// The request, read within the server's limits, for `served`.
    fn read(
        state: &AppState,
        served: &Served,
        input: Self::Input,
    ) -> impl Future<Output = AppResult<Self::Request>> + Send;

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

    /// The answer.
    fn answer(
        model: &str,
        served: &Served,
        request: Self::Request,
        plan: Self::Plan,
        prediction: Prediction,
        rows: usize,
    ) -> AppResult<Self::Answer>;
}

/// One inference request that reached a loaded version.
struct Answered<A> {
    rows: usize,
    fallback: Option<FallbackReason>,
    id: Option<String>,
    answer: A,
}

/// Serves one inference request of protocol `P` for `model`, at `version`
/// or its default; counted and logged, whatever its end.
pub(crate) async fn serve<P: Protocol>(
    state: &AppState,
    model: &str,
    version: Option<&str>,
    input: P::Input,
) -> AppResult<P::Answer> {
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
    let outcome = answer::<P>(state, model, &served, shadow, input).await;
    let version = served.manifest.model.version.to_string();
    observe(&served.counters, model, &version, started, outcome)
}

async fn answer<P: Protocol>(
    state: &AppState,
    model: &str,
    served: &Arc<Served>,
    shadow: Option<Shadowing>,
    input: P::Input,
) -> AppResult<Answered<P::Answer>> {
    let mut request = P::read(state, served, input).await?;
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
    let answer = P::answer(model, served, request, plan, prediction, rows)?;
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
        answer,
    })
}

/// Counts and logs one inference request, and gives its answer.
fn observe<A>(
    counters: &Counters,
    model: &str,
    version: &str,
    started: Instant,
    outcome: AppResult<Answered<A>>,
) -> AppResult<A> {
    let latency = started.elapsed();
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    match outcome {
        Ok(answered) => {
            let Answered {
                rows,
                fallback,
                id,
                answer,
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
            Ok(answer)
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
            Err(error)
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
pub(crate) fn fallback_parameters(reason: Option<FallbackReason>) -> Option<Map<String, Value>> {
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
