//! `fallback`: with `deadline_ms = 0` the fast fallback answers and says so;
//! its quality on the hold-out is within the fallback's budget; and it is not
//! slower than the main model on a large batch.

use std::time::Instant;

use preflight_bundle::Record;
use serde_json::json;

use super::quality::{bound_check, score};
use super::{ModelUnderTest, Suite, rows, skipped};
use crate::client::{FallbackReason, Unreachable, params};
use crate::report::{Check, Skip, SuiteReport};

/// Timed requests per side when comparing the fallback's speed with the model's.
const TIMINGS: usize = 3;
/// Hold-out rows in each timed batch: enough for the models' own cost to
/// outweigh HTTP and JSON, few enough to keep a fleet's run short.
const TIMED_ROWS: usize = 500;
/// How much slower than the model the fallback may time before it fails:
/// with a model as small as the fallback, both are HTTP and JSON, and equal.
const SPEED_MARGIN: f64 = 0.25;

pub(super) async fn run(model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    let manifest = model.bundle.manifest();
    if model.bundle.fallback().is_none() {
        return Ok(skipped(
            Suite::Fallback,
            Skip::Missing,
            "the bundle has no fallback",
        ));
    }
    let Some(holdout) = &model.holdout else {
        return Ok(skipped(
            Suite::Fallback,
            Skip::Missing,
            "needs holdout.jsonl",
        ));
    };
    let forced = Some(json!({ params::DEADLINE_MS: 0 }));
    let records: Vec<&Record> = holdout.iter().collect();
    let mut checks = Vec::new();

    let answer = model
        .client
        .infer(manifest, &rows(&records[..1]), forced.clone())
        .await?;
    checks.push(match (answer.ok(), &answer.fallback) {
        (true, Some(FallbackReason::Deadline)) => Check::new(
            "answers and says so",
            true,
            "parameters.fallback_reason = \"deadline\" with deadline_ms = 0",
        ),
        (true, other) => Check::new(
            "answers and says so",
            false,
            format!(
                "with deadline_ms = 0 the answer's fallback reason is {other:?}, not \"deadline\""
            ),
        ),
        (false, _) => Check::new(
            "answers and says so",
            false,
            format!("with deadline_ms = 0: answered {}", answer.describe()),
        ),
    });

    let mut metrics = std::collections::BTreeMap::new();
    match &manifest.contract.fallback {
        None => checks.push(Check::skipped(
            "quality",
            Skip::Missing,
            "needs contract.fallback",
        )),
        Some(budget) => match score(model, holdout, budget.metric, forced.clone()).await? {
            Ok(value) => {
                metrics.insert(budget.metric.as_str().to_owned(), value);
                let mut check = bound_check(budget, value);
                check.name = "quality".to_owned();
                checks.push(check);
            }
            Err(why) => checks.push(Check::new("quality", false, why)),
        },
    }

    // Big batches, so the models' own cost outweighs HTTP and JSON.
    let batch = rows(&records[..records.len().min(TIMED_ROWS)]);
    let mut main = Vec::new();
    let mut fallback = Vec::new();
    let mut model_answered = true;
    for _ in 0..TIMINGS {
        for (parameters, times) in [(None, &mut main), (forced.clone(), &mut fallback)] {
            let started = Instant::now();
            let answer = model
                .client
                .infer(manifest, &batch, parameters.clone())
                .await?;
            if answer.ok() {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            model_answered &= parameters.is_some() || answer.fallback.is_none();
        }
    }
    checks.push(match (fastest(&main), fastest(&fallback)) {
        // Parity reports a model that never answers; here there is nothing to compare.
        _ if !model_answered => Check::skipped(
            "not slower than the model",
            Skip::NotRun,
            "the main model did \
            not answer the timed batches: the fallback answered both sides",
        ),
        (Some(m), Some(f)) => {
            metrics.insert("batch_ms".to_owned(), f);
            Check::new(
                "not slower than the model",
                f <= m * (1.0 + SPEED_MARGIN),
                format!(
                    "{} rows: fallback {f:.2} ms, model {m:.2} ms (fastest of {TIMINGS}, \
                        alternating; margin {:.0}%)",
                    batch.len(),
                    SPEED_MARGIN * 100.0
                ),
            )
        }
        _ => Check::new(
            "not slower than the model",
            false,
            "the timed batches were not answered",
        ),
    });
    let mut report = SuiteReport::new(Suite::Fallback.name(), checks);
    report.metrics = metrics;
    Ok(report)
}

/// The fastest of the timings: a busy machine can only slow a request down,
/// so the minimum is the estimate of a batch's own cost that load disturbs least.
fn fastest(values: &[f64]) -> Option<f64> {
    values.iter().copied().min_by(f64::total_cmp)
}
