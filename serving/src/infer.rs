//! One inference: the main model within its deadline, or the fast fallback.

use std::sync::Arc;
use std::time::Duration;

use preflight_bundle::Datatype;

use crate::batch::{Batch, subject};
use crate::error::ApiError;
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

/// Batches up to this many rows run on the async worker itself.
const INLINE_ROWS: usize = 16;

/// Runs the main model, bounded by `deadline` when a fallback can answer
/// instead; errors fall back too. Large batches run on a blocking thread.
pub(crate) async fn predict(
    served: Arc<Served>,
    batch: Arc<Batch>,
    deadline: Option<Duration>,
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
    let deadline = deadline.filter(|_| served.fallback.is_some());
    if deadline == Some(Duration::ZERO) {
        return with_fallback(&served, &batch, FallbackReason::Deadline)
            .ok_or_else(|| unreachable_fallback(&served));
    }
    let result = if batch.rows <= INLINE_ROWS {
        // A few rows take microseconds: a hand-off to the blocking pool would
        // cost more than the model. The deadline is then checked afterwards.
        let started = std::time::Instant::now();
        let outputs = predictor.predict(&batch);
        if deadline.is_some_and(|budget| started.elapsed() > budget) {
            return with_fallback(&served, &batch, FallbackReason::Deadline)
                .ok_or_else(|| unreachable_fallback(&served));
        }
        Ok(outputs)
    } else {
        let run_batch = Arc::clone(&batch);
        let task = tokio::task::spawn_blocking(move || predictor.predict(&run_batch));
        match deadline {
            Some(budget) => match tokio::time::timeout(budget, task).await {
                Ok(joined) => joined,
                // The main model keeps running to completion on its thread;
                // its answer is dropped.
                Err(_) => {
                    return with_fallback(&served, &batch, FallbackReason::Deadline)
                        .ok_or_else(|| unreachable_fallback(&served));
                }
            },
            None => task.await,
        }
    };
    let failure = match result {
        Ok(Ok(outputs)) => {
            return Ok(Prediction {
                outputs: outputs.into_iter().map(Some).collect(),
                fallback: None,
            });
        }
        Ok(Err(error)) => error.to_string(),
        Err(join) => format!("the model's thread failed: {join}"),
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

fn unreachable_fallback(served: &Served) -> ApiError {
    ApiError::Internal(format!(
        "{}: no fallback to answer within the deadline",
        subject(&served.manifest)
    ))
}

/// The fallback's answer, or `None` where the model has no fallback.
fn with_fallback(served: &Served, batch: &Batch, reason: FallbackReason) -> Option<Prediction> {
    let fallback = served.fallback.as_ref()?;
    let values: Vec<f64> = (0..batch.rows)
        .map(|i| fallback.predict(&batch.row(i)))
        .collect();
    let outputs = served
        .manifest
        .outputs
        .iter()
        .map(|o| {
            (o.name == fallback.output()).then(|| match o.datatype {
                Datatype::Fp64 => TensorData::F64(values.clone()),
                // Narrowing to the declared FP32 is the point here.
                _ => TensorData::F32(values.iter().map(|&v| v as f32).collect()),
            })
        })
        .collect();
    Some(Prediction {
        outputs,
        fallback: Some(reason),
    })
}
