//! The model's own figures and their checks: p50 and p99 against their
//! absolute budgets on the model's own intervals, the errors and the
//! fallback's share, and the histogram the report draws.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use preflight_bundle::LatencyBudget;
use serde_json::json;

use super::load::{Outcome, Sample};
use super::run;
use super::stats::{self, Against, Estimate};
use crate::report::{Check, Skip};

pub(super) fn sorted_ms(samples: &[Sample]) -> Vec<f64> {
    let mut ms: Vec<f64> = samples.iter().map(|s| s.ms).collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// The figures a later run compares with: percentiles with their interval
/// ends, the shares of failed and fallback answers (`shares`), the requests
/// and the rate offered.
pub(super) fn figures(
    sorted_ms: &[f64],
    p50: Estimate,
    p99: Estimate,
    shares: (usize, usize),
    rate_per_s: f64,
) -> BTreeMap<String, f64> {
    let n = sorted_ms.len().max(1) as f64;
    let figures = [
        ("p50_ms", p50.value),
        ("p50_ms_low", p50.low),
        ("p50_ms_high", p50.high),
        ("p90_ms", stats::quantile(sorted_ms, 0.9)),
        ("p99_ms", p99.value),
        ("p99_ms_low", p99.low),
        ("p99_ms_high", p99.high),
        ("max_ms", sorted_ms.last().copied().unwrap_or(f64::NAN)),
        ("error_rate", shares.0 as f64 / n),
        ("fallback_rate", shares.1 as f64 / n),
        ("requests", sorted_ms.len() as f64),
        ("rate_per_s", rate_per_s),
    ];
    figures
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Whether another round could settle an inconclusive check.
pub(super) struct Settle {
    /// How much another round would narrow an interval (1: no round left).
    pub(super) shrink: f64,
    pub(super) undecided: bool,
}

impl Settle {
    /// The check of an estimate against its limit. An inconclusive one is
    /// skipped with why, and asks for another round if that could settle it.
    pub(super) fn check(
        &mut self,
        name: &str,
        e: Estimate,
        limit: f64,
        text: String,
        beyond: &str,
    ) -> Check {
        match Against::judge(e, limit) {
            Against::Within => Check::new(name, true, text),
            Against::Beyond => Check::new(name, false, format!("{beyond}{text}")),
            Against::Inconclusive => {
                self.undecided |= self.shrink < 1.0 && e.could_settle(limit, self.shrink);
                Check::skipped(name, Skip::Inconclusive, format!("inconclusive: {text}"))
            }
        }
    }
}

/// p50 and p99 (`names`) against their budgets, on the sorted latencies
/// `ms` and the two percentiles' intervals.
pub(super) fn percentile_checks(
    names: (&str, &str),
    ms: &[f64],
    (p50, p99): (Estimate, Estimate),
    budget: &LatencyBudget,
    settle: &mut Settle,
) -> Vec<Check> {
    let n = ms.len() as u64;
    let few = if n < run::first_round_requests() {
        format!(
            "; only {n} requests: fewer than the {} an interval of p99 needs, so it is wide",
            run::first_round_requests()
        )
    } else {
        String::new()
    };
    let tail = format!(
        " (p90 {:.2} ms, max {:.2} ms){few}",
        stats::quantile(ms, 0.9),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    vec![
        budget_check(names.0, p50, budget.p50_ms, n, settle, ""),
        budget_check(names.1, p99, budget.p99_ms, n, settle, &tail),
    ]
}

/// A percentile against its absolute budget, on the model's own interval.
fn budget_check(
    name: &str,
    e: Estimate,
    budget: f64,
    n: u64,
    settle: &mut Settle,
    extra: &str,
) -> Check {
    let text = format!("{name} {e} ms (95% interval, {n} requests), budget {budget} ms{extra}");
    settle.check(name, e, budget, text, "over the budget: ")
}

/// The failed answers and the fallback's answers among the samples.
pub(super) fn count(samples: &[Sample]) -> (Vec<&str>, Vec<&str>) {
    let (mut failures, mut fallbacks) = (Vec::new(), Vec::new());
    for s in samples {
        match &s.outcome {
            Outcome::Model => {}
            Outcome::Fallback(reason) => fallbacks.push(reason.as_str()),
            Outcome::Failed(why) => failures.push(why.as_str()),
        }
    }
    (failures, fallbacks)
}

pub(super) fn errors_check(failures: &[&str], n: u64, rate: f64) -> Check {
    match failures.first() {
        None => Check::new(
            "errors",
            true,
            format!("{n} requests at {rate:.0}/s, none failed"),
        ),
        Some(first) => Check::new(
            "errors",
            false,
            format!(
                "error rate {:.1}% ({} of {n} requests failed; first: {first})",
                failures.len() as f64 * 100.0 / n.max(1) as f64,
                failures.len()
            ),
        ),
    }
}

pub(super) fn fallback_check(fallbacks: &[&str], n: u64, limit: f64) -> Check {
    let rate = fallbacks.len() as f64 / n.max(1) as f64;
    let reason = fallbacks
        .first()
        .map(|r| format!(" (first reason: {r})"))
        .unwrap_or_default();
    Check::new(
        "fallback rate",
        rate <= limit,
        format!(
            "fallback rate {:.1}%: {} of {n} requests were answered by the fallback{reason}, limit \
                {:.1}%",
            rate * 100.0,
            fallbacks.len(),
            limit * 100.0
        ),
    )
}

/// The first bin of the latency histogram, in µs: below a typical request's
/// time, so that a sub-millisecond server's spread shows in the chart.
pub(super) const FIRST_BIN_US: u64 = 50;

/// Requests per bin, `[[upper bound in ms, count], ...]`, from one HDR
/// histogram: bins 1.5 times wider each, from [`FIRST_BIN_US`].
pub(super) fn histogram(ms: &[f64]) -> Vec<serde_json::Value> {
    let Ok(mut h) = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3) else {
        return Vec::new();
    };
    for x in ms {
        let _ = h.record(((x * 1000.0).round() as u64).max(1));
    }
    h.iter_log(FIRST_BIN_US, 1.5)
        .map(|v| {
            json!([
                v.value_iterated_to() as f64 / 1000.0,
                v.count_since_last_iteration()
            ])
        })
        .collect()
}
