//! `size`: the artifact's bytes and the model's memory on the endpoint,
//! each against the budget and against the baseline release's; the
//! endpoint's resident memory and the image's size as figures.

use preflight_bundle::SizeBudget;

use super::Phase;
use super::descriptor::{Comparison, Descriptor, KeyFigure, KeyFigures};
use super::memory::{self, Unmeasured};
use super::{BaselineReport, ModelUnderTest, Suite, skipped};
use crate::client::Unreachable;
use crate::report::{Check, Limit, Skip, SuiteReport};

/// What the rest of the harness knows of the suite (`Suite::descriptor`).
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    // Resident memory is read after the latency run has exercised every model.
    phase: Phase::After,
    key_figures: KeyFigures::Listed(&[
        KeyFigure {
            metric: "model_bytes",
            label: "artifact",
            checks: ["max_model_bytes", "growth against the baseline"],
            compared: Comparison::Alike,
        },
        KeyFigure {
            metric: "memory_bytes",
            label: "memory",
            checks: ["max_memory_bytes", "memory growth against the baseline"],
            compared: Comparison::OnTarget,
        },
    ]),
    ..Descriptor::FUNCTIONAL
};

pub(super) async fn run(model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    let Some(budget) = &model.bundle.manifest().contract.size else {
        return Ok(skipped(Suite::Size, Skip::Missing, "needs contract.size"));
    };
    let bytes = match model.bundle.model_bytes() {
        Ok(b) => b,
        Err(e) => {
            return Ok(SuiteReport::new(
                Suite::Size.name(),
                vec![Check::new("model bytes", false, e.to_string())],
            ));
        }
    };
    let mut checks = vec![
        bound("max_model_bytes", "artifact", bytes, budget.max_model_bytes),
        growth(
            model,
            budget,
            "growth against the baseline",
            "model_bytes",
            bytes,
        ),
    ];
    let measured = memory::measure(model).await?;
    match &measured {
        Ok(cost) => {
            let what = format!("memory ({})", cost.how());
            checks.push(bound(
                "max_memory_bytes",
                &what,
                cost.bytes,
                budget.max_memory_bytes,
            ));
            let name = "memory growth against the baseline";
            checks.push(match &model.baseline {
                // A server's memory differs between a process and a container
                // (another build, allocator and libraries).
                BaselineReport::Found {
                    elsewhere: Some(kind),
                    ..
                } if budget.max_growth.is_some() => Check::skipped(
                    name,
                    Skip::NotCompared,
                    format!(
                        "not compared: the baseline's memory was measured on a {kind} target, \
                         this run's on another kind: not alike; memory {}",
                        megabytes(cost.bytes)
                    ),
                ),
                _ => growth(model, budget, name, "memory_bytes", cost.bytes),
            });
        }
        Err(Unmeasured::Failed(why)) => {
            checks.push(Check::new("max_memory_bytes", false, why.clone()));
        }
        Err(Unmeasured::Skipped(skip, why)) => {
            checks.push(Check::skipped("max_memory_bytes", *skip, why.clone()));
        }
    }
    let mut report = SuiteReport::new(Suite::Size.name(), checks);
    let cost = measured.as_ref().ok().copied();
    let bytes_figures = [
        ("model_bytes", Some(bytes)),
        ("memory_bytes", cost.map(|c| c.bytes)),
        ("image_bytes", model.image_bytes),
        (
            "endpoint_resident_bytes_after_load",
            model.memory_after_load,
        ),
        // The suites run in order, so this is after the latency run.
        (
            "endpoint_resident_bytes",
            model.memory.as_ref().and_then(|read| read()),
        ),
    ];
    let bytes_figures = bytes_figures.map(|(k, v)| (k, v.map(|v| v as f64)));
    // How memory_bytes was read: both growths, which may be negative.
    let growths = [
        ("memory_heap_growth_bytes", cost.map(|c| c.heap as f64)),
        (
            "memory_resident_growth_bytes",
            cost.and_then(|c| c.resident).map(|r| r as f64),
        ),
    ];
    for (key, value) in bytes_figures.into_iter().chain(growths) {
        if let Some(value) = value {
            report.metrics.insert(key.to_owned(), value);
        }
    }
    let limits = [
        ("model_bytes", budget.max_model_bytes),
        ("memory_bytes", budget.max_memory_bytes),
    ];
    for (key, max) in limits {
        if let Some(max) = max {
            report.limits.insert(key.to_owned(), Limit::Max(max as f64));
        }
    }
    Ok(report)
}

/// `what` (the artifact, the memory) against its budget `key`.
fn bound(key: &str, what: &str, bytes: u64, max: Option<u64>) -> Check {
    match max {
        Some(max) => {
            let within = bytes <= max;
            let budget = if within { "budget" } else { "over the budget" };
            Check::new(
                key,
                within,
                format!(
                    "{what}: {}, {budget} {key} {}",
                    megabytes(bytes),
                    megabytes(max)
                ),
            )
        }
        None => Check::skipped(
            key,
            Skip::Missing,
            format!("{what}: {}; the contract sets no {key}", megabytes(bytes)),
        ),
    }
}

/// A figure against the baseline release's, within `max_growth`.
fn growth(model: &ModelUnderTest, budget: &SizeBudget, name: &str, key: &str, now: u64) -> Check {
    let Some(limit) = budget.max_growth else {
        return Check::skipped(name, Skip::Missing, "the contract sets no max_growth");
    };
    match model.baseline_metric(Suite::Size, key) {
        Err((skip, why)) => Check::skipped(name, skip, why),
        Ok(base) => {
            let growth = now as f64 / base - 1.0;
            let within = growth <= limit;
            Check::new(
                name,
                within,
                format!(
                    "{key} {} against the baseline's {} ({:+.1}%, {} +{:.0}%)",
                    megabytes(now),
                    megabytes(base as u64),
                    growth * 100.0,
                    if within { "limit" } else { "over the limit" },
                    limit * 100.0
                ),
            )
        }
    }
}

/// `6.37 MB (6370016 bytes)`: readable, and exact.
fn megabytes(bytes: u64) -> String {
    format!("{:.2} MB ({bytes} bytes)", bytes as f64 / 1e6)
}
