//! `latency`: the fleet run (`run.rs`: one open-loop schedule for every
//! model, `schedule.rs`, sent by `load.rs`), and the judgement of what it
//! measured for each model, here, on the statistics of `stats.rs`: its own
//! figures against its budgets (`budgets.rs`), and against the last release
//! (`compare.rs`).
//!
//! Budgets are judged on the model's own 95 % intervals; "slower than the
//! last release" on the paired ratio of the two versions measured in the
//! same run, or, where only a baseline report exists, on both runs'
//! intervals. Answers from the fallback are not the main model's.

mod arms;
mod budgets;
mod compare;
mod load;
pub(crate) mod run;
mod schedule;
pub(crate) mod stats;

use preflight_bundle::LatencyBudget;
use serde_json::json;

use self::budgets::{Settle, count, errors_check, fallback_check, figures, histogram, sorted_ms};
use self::compare::{against_report, paired};
use self::load::Sample;
use super::Phase;
use super::descriptor::{Chart, Comparison, Descriptor, KeyFigure, KeyFigures, Need};
use super::{ModelUnderTest, Suite, skipped};
use crate::report::{Check, Limit, Skip, SuiteReport, Verdict};

/// What the rest of the harness knows of the suite (`Suite::descriptor`).
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    // One run of the whole fleet, with nothing else of the harness beside it.
    phase: Phase::Fleet,
    needs: &[Need::LastRelease],
    key_figures: KeyFigures::Listed(&[
        KeyFigure {
            metric: "p50_ms",
            label: "p50",
            checks: ["p50", "p50 against the last release"],
            compared: Comparison::Paired,
        },
        KeyFigure {
            metric: "p99_ms",
            label: "p99",
            checks: ["p99", "p99 against the last release"],
            compared: Comparison::Paired,
        },
    ]),
    chart: Some(Chart::Latency),
    ..Descriptor::FUNCTIONAL
};

/// The key of `details` that holds the latency histogram, which
/// report.html draws.
pub(crate) const HISTOGRAM_MS: &str = "histogram_ms";

/// Where the last release was measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Baseline {
    /// Another version of the model in the same repository, on the same endpoint.
    Version(u64),
    /// The default version of the model on the last release's endpoint
    /// (`--baseline-target`, or one started on `--baseline-models`).
    Target(String),
}

/// A model's samples from the fleet run.
#[derive(Debug, Clone)]
pub(crate) struct Measured<'a> {
    /// Ordered by sample index.
    pub(crate) candidate: &'a [Sample],
    /// The last release's samples, pair by pair with the candidate's.
    pub(crate) baseline: Option<(Baseline, &'a [Sample])>,
    /// Why no last release was measured beside the candidate.
    pub(crate) no_baseline: Option<&'a str>,
    /// The rate each version was offered, requests per second.
    pub(crate) rate_per_s: f64,
    pub(crate) rounds: u32,
    /// Requests per version another round would add: 0 once the contract's
    /// `requests` are spent.
    pub(crate) next_round: u64,
    /// The timing checks the fleet's shared rounds failed, when the samples
    /// are those of a round of the model's own that confirms or clears them.
    pub(crate) retimed: Option<&'a str>,
}

/// A model's latency report, and whether another round could plausibly
/// settle a check that is still inconclusive (`Estimate::could_settle`).
#[derive(Debug)]
pub(crate) struct Judged {
    pub(crate) report: SuiteReport,
    pub(crate) undecided: bool,
}

/// The latency budget, or the skip that says what is missing.
pub(crate) fn needs(model: &ModelUnderTest) -> Result<&LatencyBudget, Box<SuiteReport>> {
    match (&model.samples, &model.bundle.manifest().contract.latency) {
        (Some(samples), Some(budget)) if !samples.is_empty() => Ok(budget),
        (samples, budget) => Err(Box::new(skipped(
            Suite::Latency,
            Skip::Missing,
            super::needs(&[
                (
                    "samples.jsonl",
                    samples.as_ref().is_some_and(|s| !s.is_empty()),
                ),
                ("contract.latency", budget.is_some()),
            ]),
        ))),
    }
}

pub(crate) fn judge(model: &ModelUnderTest, measured: &Measured<'_>) -> Judged {
    let budget = match needs(model) {
        Ok(budget) => budget,
        Err(report) => {
            return Judged {
                report: *report,
                undecided: false,
            };
        }
    };
    let ms = sorted_ms(measured.candidate);
    let n = ms.len() as u64;
    let p50 = stats::quantile_interval(&ms, 0.5);
    let p99 = stats::quantile_interval(&ms, 0.99);
    let mut settle = Settle {
        shrink: (n as f64 / (n + measured.next_round).max(1) as f64).sqrt(),
        undecided: false,
    };
    let names = (TIMED[0], TIMED[1]);
    let mut checks = budgets::percentile_checks(names, &ms, (p50, p99), budget, &mut settle);
    let (failures, fallbacks) = count(measured.candidate);
    checks.push(errors_check(&failures, n, measured.rate_per_s));
    checks.push(fallback_check(&fallbacks, n, budget.fallback_rate()));
    let shares = (failures.len(), fallbacks.len());
    let mut metrics = figures(&ms, p50, p99, shares, measured.rate_per_s);
    let method = match &measured.baseline {
        Some((baseline, samples)) => {
            let (ratios, method) = paired(
                model,
                budget,
                measured.candidate,
                baseline,
                samples,
                &mut checks,
                &mut settle,
            );
            metrics.extend(ratios);
            method
        }
        None => against_report(model, p50, p99, measured.no_baseline, &mut checks),
    };
    if let Some(failed) = measured.retimed {
        retimed(&mut checks, failed);
    }
    let mut report = SuiteReport::new(Suite::Latency.name(), checks);
    report.metrics = metrics;
    report.limits = limits(budget);
    report.details = json!({
        HISTOGRAM_MS: histogram(&ms),
        "method": method,
        "rounds": measured.rounds,
    });
    Judged {
        report,
        undecided: settle.undecided,
    }
}

/// The budget's figures as the report's limits.
fn limits(budget: &LatencyBudget) -> std::collections::BTreeMap<String, Limit> {
    [
        ("p50_ms", budget.p50_ms),
        ("p99_ms", budget.p99_ms),
        ("fallback_rate", budget.fallback_rate()),
    ]
    .into_iter()
    .map(|(key, max)| (key.to_owned(), Limit::Max(max)))
    .collect()
}

/// Says on each timing check that it was timed again in a round of the
/// model's own, after the fleet's shared rounds failed `failed`.
fn retimed(checks: &mut [Check], failed: &str) {
    for check in checks
        .iter_mut()
        .filter(|c| TIMED.contains(&c.name.as_str()))
    {
        check.message.push_str(&format!(
            "; timed again in a round of its own, after the fleet's shared rounds failed {failed}"
        ));
    }
}

/// The checks of a timing verdict: the budgets, then the comparisons with
/// the last release.
const TIMED: [&str; 4] = [
    "p50",
    "p99",
    "p50 against the last release",
    "p99 against the last release",
];

/// The timing checks a report failed that a round of the model's own must
/// confirm, if any (`run.rs`): the budgets, which the fleet's shared
/// load bears on, and the tail against the last release, which a burst of
/// stalls on one version can move. Not the median against the last release:
/// its interval is a few percent wide, and no stall moves the median of a
/// few hundred pairs past a limit; and nothing, when the median failed.
pub(crate) fn failed_timing(report: &SuiteReport) -> Option<String> {
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| TIMED.contains(&c.name.as_str()) && c.verdict == Verdict::Failed)
        .map(|c| c.name.as_str())
        .collect();
    // Failed on the median, the suite fails whatever a round of its own says.
    (!failed.is_empty() && !failed.contains(&TIMED[2])).then(|| failed.join(" and "))
}

/// FNV-1a: a seed that is the same for a model on every machine and release.
pub(crate) fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
