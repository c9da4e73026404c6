//! One inference: the main model within its deadline, or the fast fallback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use preflight_bundle::Datatype;

use crate::admission::{Admission, RunClock};
use crate::error::ApiError;
use crate::gather;
use crate::model::{BackendError, Batch, FallbackReason, Predictor, Stop, Subject, TensorData};
use crate::placement::{Placement, place};
use crate::served::{Main, Served};

/// The outputs of one inference, in manifest output order (`None` where the
/// fallback answered and has no value for that output).
pub(crate) struct Prediction {
    pub outputs: Vec<Option<TensorData>>,
    pub fallback: Option<FallbackReason>,
}

/// Runs the main model, bounded by `deadline` when a fallback can answer
/// instead; errors fall back too. Costlier batches wait for a run slot until
/// `wait_until` (or the deadline, whichever comes first) and run on a
/// blocking thread, which a deadline stops early.
pub(crate) async fn predict(
    admission: &Admission,
    served: Arc<Served>,
    batch: Arc<Batch>,
    deadline: Option<Duration>,
    wait_until: Instant,
) -> Result<Prediction, ApiError> {
    let predictor = match &served.main {
        Main::Ready(p) => Arc::clone(p),
        Main::Failed(reason) => {
            return with_fallback(&served, &batch, FallbackReason::NotLoaded).ok_or_else(|| {
                ApiError::Unavailable(format!(
                    "{}: the model could not be loaded ({reason}) and it has no fallback",
                    Subject::of(&served.manifest)
                ))
            });
        }
    };
    let deadline = deadline.filter(|_| served.fallback().is_some());
    if deadline == Some(Duration::ZERO) {
        return with_fallback(&served, &batch, FallbackReason::Deadline)
            .ok_or_else(|| unreachable_fallback(&served));
    }
    let run = match place(&served.load, batch.rows, served.gather.mode()) {
        Placement::Gathered => {
            let started = Instant::now();
            let outputs = gather::predict(&served, &predictor, Arc::clone(&batch)).await;
            within(deadline, started, outputs)
        }
        Placement::Inline { unchecked } => {
            let _alone = unchecked.then(|| gather::running_alone(&served, &predictor));
            run_inline(&served, &batch, predictor.as_ref(), deadline)
        }
        Placement::Blocking => {
            let timing = Timing {
                started: Instant::now(),
                deadline,
                wait_until,
            };
            run_blocking(admission, &served, &batch, predictor, timing).await?
        }
    };
    let failure = match run {
        Run::TooLate => {
            return with_fallback(&served, &batch, FallbackReason::Deadline)
                .ok_or_else(|| unreachable_fallback(&served));
        }
        Run::Done(Ok(outputs)) => {
            return Ok(Prediction {
                outputs: outputs.into_iter().map(Some).collect(),
                fallback: None,
            });
        }
        Run::Done(Err(failure)) => failure,
    };
    tracing::warn!(
        model = %served.manifest.model.name,
        version = served.manifest.model.version,
        error = %failure,
        "main model failed"
    );
    with_fallback(&served, &batch, FallbackReason::Error).ok_or_else(|| {
        ApiError::Internal(format!(
            "{}: the model failed: {failure}",
            Subject::of(&served.manifest)
        ))
    })
}

/// How a run of the main model ended.
enum Run {
    /// It answered, or failed with this reason.
    Done(Result<Vec<TensorData>, String>),
    /// It did not answer within the deadline: the fallback answers.
    TooLate,
}

/// When a blocking run started, and what bounds its wait and its run.
struct Timing {
    started: Instant,
    deadline: Option<Duration>,
    wait_until: Instant,
}

/// A cheap batch, on the async worker: the deadline is checked afterwards.
fn run_inline(
    served: &Served,
    batch: &Batch,
    predictor: &dyn Predictor,
    deadline: Option<Duration>,
) -> Run {
    let (started, clock) = (Instant::now(), RunClock::start());
    let outputs = predictor.predict(batch, None);
    served.load.ran(batch.rows, clock.elapsed());
    within(deadline, started, outputs)
}

/// A run's outputs, unless it ended past the deadline.
fn within(
    deadline: Option<Duration>,
    started: Instant,
    outputs: Result<Vec<TensorData>, BackendError>,
) -> Run {
    if deadline.is_some_and(|budget| started.elapsed() > budget) {
        return Run::TooLate;
    }
    Run::Done(outputs.map_err(|e| e.to_string()))
}

/// A costlier batch: a run slot within the wait, then a blocking thread,
/// told to stop when the deadline passes.
async fn run_blocking(
    admission: &Admission,
    served: &Arc<Served>,
    batch: &Arc<Batch>,
    predictor: Arc<dyn Predictor>,
    timing: Timing,
) -> Result<Run, ApiError> {
    let Timing {
        started,
        deadline,
        wait_until,
    } = timing;
    let due = deadline.map(|budget| started + budget);
    let until = due.map_or(wait_until, |d| d.min(wait_until));
    let slot = match admission
        .run_slot(until, served.load.expected(batch.rows))
        .await
    {
        Ok(slot) => slot,
        // The deadline came before the end of the wait: the fallback
        // answers in time.
        Err(_) if due.is_some_and(|d| d <= wait_until) => return Ok(Run::TooLate),
        Err(shed) => return Err(shed.for_model(&Subject::of(&served.manifest))),
    };
    let stop = Arc::new(Stop::default());
    let task = tokio::task::spawn_blocking({
        let (served, batch, stop) = (Arc::clone(served), Arc::clone(batch), Arc::clone(&stop));
        move || {
            let clock = RunClock::start();
            let outputs = predictor.predict(&batch, Some(&stop));
            match &outputs {
                Ok(_) => served.load.ran(batch.rows, clock.elapsed()),
                Err(_) if stop.is_requested() => slot.stopped(),
                Err(_) => {}
            }
            outputs
        }
    });
    let joined = match deadline {
        Some(budget) => {
            let left = budget.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, task).await {
                Ok(joined) => joined,
                // The run is told to stop, and gives its slot back when it
                // has; its answer is dropped.
                Err(_) => {
                    stop.request();
                    return Ok(Run::TooLate);
                }
            }
        }
        None => task.await,
    };
    Ok(Run::Done(match joined {
        Ok(outputs) => outputs.map_err(|e| e.to_string()),
        Err(join) => Err(format!("the model's thread failed: {join}")),
    }))
}

fn unreachable_fallback(served: &Served) -> ApiError {
    ApiError::Internal(format!(
        "{}: no fallback to answer within the deadline",
        Subject::of(&served.manifest)
    ))
}

/// The fallback's answer, or `None` where the model has no fallback. A
/// classifier's fallback gives its probabilities, and the label is their
/// arg-max, as the main model's is.
fn with_fallback(served: &Served, batch: &Batch, reason: FallbackReason) -> Option<Prediction> {
    let fallback = served.fallback()?;
    let mut row = Vec::with_capacity(batch.columns.len());
    let answers: Vec<Vec<f64>> = (0..batch.rows)
        .map(|i| {
            batch.fill_row(i, &mut row);
            fallback.predict(&row)
        })
        .collect();
    let classifier = served.manifest.classifier();
    let outputs = served
        .manifest
        .outputs
        .iter()
        .enumerate()
        .map(|(index, o)| {
            if o.name == fallback.output() {
                let values = answers.iter().flatten();
                return Some(match o.datatype {
                    Datatype::Fp64 => TensorData::F64(values.copied().collect()),
                    // Narrowing to the declared FP32 is the point here.
                    _ => TensorData::F32(values.map(|&v| v as f32).collect()),
                });
            }
            let c = classifier.filter(|c| c.label == index)?;
            let classes = answers
                .iter()
                .map(|p| &c.classes[preflight_bundle::arg_max(p).unwrap_or(0)]);
            Some(match o.datatype {
                Datatype::Bytes => TensorData::Text(classes.map(ToString::to_string).collect()),
                _ => TensorData::I64(
                    classes
                        .map(|class| match class {
                            preflight_bundle::Class::Int(i) => *i,
                            preflight_bundle::Class::Text(_) => 0,
                        })
                        .collect(),
                ),
            })
        })
        .collect();
    Some(Prediction {
        outputs,
        fallback: Some(reason),
    })
}
