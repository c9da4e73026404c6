//! One inference: the main model within its deadline, or the fast fallback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use preflight_bundle::Datatype;

use crate::admission::{Admission, ModelLoad, RunClock};
use crate::backend::{BackendError, Predictor, Stop};
use crate::batch::{Batch, subject};
use crate::error::ApiError;
use crate::gather::{self, Mode};
use crate::protocol::TensorData;
use crate::registry::{Main, Served};

/// Why the fallback answered instead of the main model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// The main model returned an error.
    Error,
    /// The main model did not answer within the deadline.
    Deadline,
    /// The main model could not be loaded.
    NotLoaded,
}

impl FallbackReason {
    pub const ALL: [FallbackReason; 3] = [
        FallbackReason::Error,
        FallbackReason::Deadline,
        FallbackReason::NotLoaded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Error => "error",
            FallbackReason::Deadline => "deadline",
            FallbackReason::NotLoaded => "not_loaded",
        }
    }
}

/// The outputs of one inference, in manifest output order (`None` where the
/// fallback answered and has no value for that output).
pub(crate) struct Prediction {
    pub outputs: Vec<Option<TensorData>>,
    pub fallback: Option<FallbackReason>,
}

/// Batches of at most this many rows, expected to take at most
/// [`INLINE_COST`], run on the async worker itself: they need no hand-off to
/// a blocking thread, and no run slot, which a busy server may not have.
const INLINE_ROWS: usize = 16;

/// The most a batch run on the async worker is expected to cost: its rows
/// times what a row of its model costs (`ModelLoad::expected`), which
/// overstates a batch of several rows, whose run costs mostly per run.
///
/// Well above what a single row of a fixture tree ensemble costs at any
/// rate: 20–40 µs when its requests come close together, and 100–400 µs
/// when they come far apart, each run finding the trees out of the cache
/// (benches/HISTORY.md, "What a cold run costs"). A threshold inside that
/// range would send a cheap model to the run slots whenever its traffic
/// thinned, and keep it there once traffic rose, where runs on the
/// blocking threads cost more: a busy machine would shed it. A run of a
/// millisecond or more gains little from the worker, and is worth a slot
/// that its deadline can stop.
pub(crate) const INLINE_COST: Duration = Duration::from_millis(1);

/// Whether a batch of `rows` rows of the model whose runs cost `load` runs
/// on the async worker rather than with a run slot.
pub(crate) fn runs_inline(load: &ModelLoad, rows: usize) -> bool {
    rows <= INLINE_ROWS && load.expected(rows) <= INLINE_COST
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
                    subject(&served.manifest)
                ))
            });
        }
    };
    let deadline = deadline.filter(|_| served.fallback().is_some());
    if deadline == Some(Duration::ZERO) {
        return with_fallback(&served, &batch, FallbackReason::Deadline)
            .ok_or_else(|| unreachable_fallback(&served));
    }
    let run = if runs_inline(&served.load, batch.rows) {
        match served.gather.mode() {
            // A version whose runs may take a single row runs side by side
            // on its sessions: queued, it would run one row at a time.
            Mode::On if gather::row_cap(&served.load) >= 2 => {
                let started = Instant::now();
                let outputs = gather::predict(&served, &predictor, Arc::clone(&batch)).await;
                within(deadline, started, outputs)
            }
            Mode::Unchecked => {
                let _alone = gather::running_alone(&served, &predictor);
                run_inline(&served, &batch, predictor.as_ref(), deadline)
            }
            Mode::On | Mode::Checking | Mode::Off => {
                run_inline(&served, &batch, predictor.as_ref(), deadline)
            }
        }
    } else {
        let timing = Timing {
            started: Instant::now(),
            deadline,
            wait_until,
        };
        run_blocking(admission, &served, &batch, predictor, timing).await?
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
            subject(&served.manifest)
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
        Err(shed) => return Err(shed.for_model(&subject(&served.manifest))),
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
        subject(&served.manifest)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(rows: usize, took: Duration) -> ModelLoad {
        let load = ModelLoad::default();
        load.ran(rows, took);
        load
    }

    #[test]
    fn a_small_batch_runs_inline_unless_its_model_costs_a_millisecond() {
        // A fresh model, and one whose runs found its trees out of the cache.
        assert!(runs_inline(&ModelLoad::default(), 1));
        let cold = load(1, Duration::from_micros(400));
        assert!(runs_inline(&cold, 1));
        assert!(runs_inline(&cold, 2));
        assert!(!runs_inline(&cold, 3), "1.2 ms expected");
        let costly = load(1, Duration::from_micros(1500));
        assert!(!runs_inline(&costly, 1));
        assert!(!runs_inline(&ModelLoad::default(), INLINE_ROWS + 1));
    }
}
