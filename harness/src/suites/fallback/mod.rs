//! `fallback`: with `deadline_ms = 0` the fast fallback answers and says so;
//! its quality on the hold-out is within the fallback's budget; it agrees
//! with the bundle's own fallback off the hold-out and with the training
//! process's; it stays near the main model where no row reaches; and it is
//! not slower than the main model on a large batch.

mod agreement;
mod beside;

use std::time::Instant;

use preflight_bundle::Record;
use serde_json::json;

use super::descriptor::Descriptor;
use super::quality::{bound_check, score};
use super::{ModelUnderTest, Suite, offers, rows, skipped};
use crate::client::{FallbackReason, Unreachable, params};
use crate::report::{Check, Skip, SuiteReport};

/// What the rest of the harness knows of the suite (`Suite::descriptor`).
pub(super) const DESCRIPTOR: Descriptor = Descriptor::FUNCTIONAL;

/// Timed requests per side when comparing the fallback's speed with the
/// model's: the fastest of nine stays near a batch's own cost on a machine
/// busy enough to slow all of five (a 2-core machine running the test suites
/// did, for a 30-tree model timed as long as its fallback).
const TIMINGS: usize = 9;
/// Hold-out rows in each timed batch: enough for the models' own cost to
/// outweigh HTTP and JSON, few enough to keep a fleet's run short.
const TIMED_ROWS: usize = 500;
/// How much slower than the model the fallback may time before it fails:
/// with a model as small as the fallback, both are HTTP and JSON, and equal.
const SPEED_MARGIN: f64 = 0.25;
/// A fallback at most this much slower than the model on the timed batch,
/// in milliseconds, is not slower in a way that matters: six microseconds a
/// row. A linear or logistic main model costs what its fallback does, and
/// then the two timings differ by what the machine does meanwhile: the
/// fastest of nine of such a pair once parted by 1.02 ms on a 2-core machine
/// verifying two models at once (late-nairobi, 3.11 and 4.13 ms), while a
/// fallback that is slow in earnest (the `slow-fallback` defect) costs 20 ms.
const SPEED_FLOOR_MS: f64 = 3.0;

pub(super) async fn run(model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    if let Some(error) = model.bundle.fallback_error() {
        let check = Check::new("fallback.json loads", false, error);
        return Ok(SuiteReport::new(Suite::Fallback.name(), vec![check]));
    }
    let Some(fallback) = model.bundle.fallback() else {
        return Ok(skipped(
            Suite::Fallback,
            Skip::Missing,
            "the bundle has no fallback",
        ));
    };
    // A server without Preflight's fallback extension (MLServer, KServe's,
    // Triton) has no fallback to ask for, nor a way to say one answered.
    if let Some(skip) = offers(model, Suite::Fallback, "preflight_fallback", "fallback").await? {
        return Ok(skip);
    }
    let Some(holdout) = &model.holdout else {
        return Ok(skipped(
            Suite::Fallback,
            Skip::Missing,
            "needs holdout.jsonl",
        ));
    };
    let records: Vec<&Record> = holdout.iter().collect();
    let mut metrics = std::collections::BTreeMap::new();
    let checks = vec![
        says_so(model, &records).await?,
        quality(model, holdout, &mut metrics).await?,
        agreement::off_holdout(model, fallback).await?,
        agreement::with_training(model, fallback).await?,
        beside::near_main(model, fallback, holdout, &mut metrics).await?,
        speed(model, &records, &mut metrics).await?,
    ];
    let mut report = SuiteReport::new(Suite::Fallback.name(), checks);
    report.metrics = metrics;
    let budget = model.bundle.manifest().contract.fallback.as_ref();
    report.limits.extend(budget.and_then(super::quality::limit));
    Ok(report)
}

pub(super) fn forced() -> Option<serde_json::Value> {
    Some(json!({ params::DEADLINE_MS: 0 }))
}

/// With `deadline_ms = 0` the fallback answers and the answer says so.
async fn says_so(model: &ModelUnderTest, records: &[&Record]) -> Result<Check, Unreachable> {
    const NAME: &str = "answers and says so";
    let manifest = model.bundle.manifest();
    let answer = model
        .client
        .infer(manifest, &rows(&records[..1]), forced())
        .await?;
    Ok(match (answer.ok(), &answer.fallback) {
        (true, Some(FallbackReason::Deadline)) => Check::new(
            NAME,
            true,
            "parameters.fallback_reason = \"deadline\" with deadline_ms = 0",
        ),
        (true, other) => Check::new(
            NAME,
            false,
            format!(
                "with deadline_ms = 0 the answer's fallback reason is {other:?}, not \"deadline\""
            ),
        ),
        (false, _) => Check::new(
            NAME,
            false,
            format!("with deadline_ms = 0: answered {}", answer.describe()),
        ),
    })
}

/// The fallback's quality on the hold-out against `contract.fallback`.
async fn quality(
    model: &ModelUnderTest,
    holdout: &[Record],
    metrics: &mut std::collections::BTreeMap<String, f64>,
) -> Result<Check, Unreachable> {
    let Some(budget) = &model.bundle.manifest().contract.fallback else {
        return Ok(Check::skipped(
            "quality",
            Skip::Missing,
            "needs contract.fallback",
        ));
    };
    Ok(
        match score(model, holdout, budget.metric, forced()).await? {
            Ok(value) => {
                metrics.insert(budget.metric.as_str().to_owned(), value);
                let output = super::quality::scored_output(model.bundle.manifest());
                let mut check = bound_check(budget, &output, value);
                check.name = "quality".to_owned();
                check
            }
            Err(why) => Check::new("quality", false, why),
        },
    )
}

/// The fallback is not slower than the main model on one large batch.
async fn speed(
    model: &ModelUnderTest,
    records: &[&Record],
    metrics: &mut std::collections::BTreeMap<String, f64>,
) -> Result<Check, Unreachable> {
    const NAME: &str = "not slower than the model";
    let manifest = model.bundle.manifest();
    // Big batches, so the models' own cost outweighs HTTP and JSON.
    let batch = rows(&records[..records.len().min(TIMED_ROWS)]);
    let mut main = Vec::new();
    let mut fallback = Vec::new();
    let mut model_answered = true;
    for _ in 0..TIMINGS {
        for (parameters, times) in [(None, &mut main), (forced(), &mut fallback)] {
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
    Ok(match (fastest(&main), fastest(&fallback)) {
        // Parity reports a model that never answers; here there is nothing to compare.
        _ if !model_answered => Check::skipped(
            NAME,
            Skip::NotRun,
            "the main model did not answer the timed batches: the fallback answered both sides",
        ),
        (Some(m), Some(f)) => {
            metrics.insert("batch_ms".to_owned(), f);
            let within = not_slower(f, m);
            Check::new(
                NAME,
                within,
                format!(
                    "{}{} rows: fallback {f:.2} ms, model {m:.2} ms (fastest of {TIMINGS}, \
                        alternating; margin {:.0}% or {SPEED_FLOOR_MS} ms)",
                    if within {
                        ""
                    } else {
                        "the fallback is slower than the model: "
                    },
                    batch.len(),
                    SPEED_MARGIN * 100.0
                ),
            )
        }
        _ => Check::new(NAME, false, "the timed batches were not answered"),
    })
}

/// Whether a fallback that took `fallback` ms is not slower than a model
/// that took `model` ms, within the margin or the floor, whichever is wider.
fn not_slower(fallback: f64, model: f64) -> bool {
    fallback <= model * (1.0 + SPEED_MARGIN) || fallback <= model + SPEED_FLOOR_MS
}

/// The fastest of the timings: a busy machine can only slow a request down,
/// so the minimum is the estimate of a batch's own cost that load disturbs least.
fn fastest(values: &[f64]) -> Option<f64> {
    values.iter().copied().min_by(f64::total_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fallback_is_slower_beyond_both_the_margin_and_the_floor() {
        // A small model: a millisecond more is within the floor.
        assert!(not_slower(4.13, 3.11));
        assert!(!not_slower(6.3, 3.11));
        // A costly model: the margin is the wider.
        assert!(not_slower(24.0, 20.0));
        assert!(!not_slower(26.0, 20.0));
        // The slow-fallback defect: 20 ms on every answer of the fallback.
        assert!(!not_slower(21.2, 1.2));
    }
}
