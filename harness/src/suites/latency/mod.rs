//! `latency`: the fleet run (`run.rs`: one open-loop schedule for every
//! model, `schedule.rs`, sent by `load.rs`), and the judgement of what it
//! measured for each model, here, on the statistics of `stats.rs`.
//!
//! Budgets are judged on the model's own 95 % intervals; "slower than the
//! last release" on the paired ratio of the two versions measured in the
//! same run, or, where only a baseline report exists, on both runs'
//! intervals. Answers from the fallback are not the main model's.

mod load;
pub(crate) mod run;
mod schedule;
pub(crate) mod stats;

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use preflight_bundle::LatencyBudget;
use serde_json::json;

use super::Phase;
use super::descriptor::{Chart, Comparison, Descriptor, KeyFigure, KeyFigures, Need};
use super::{ModelUnderTest, Suite, skipped};
use crate::report::{Check, Limit, Skip, SuiteReport, Verdict};
use load::{Outcome, Sample};
use stats::{Against, Estimate};

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

/// How a failed comparison with the last release begins.
/// The key of `details` that holds the latency histogram, which
/// report.html draws.
pub(crate) const HISTOGRAM_MS: &str = "histogram_ms";

const SLOWER: &str = "slower than the last release: ";
/// Bootstrap resamples of the paired ratios.
const RESAMPLES: usize = 1000;

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
    let few = if n < run::first_round_requests() {
        format!(
            "; only {n} requests: fewer than the {} an interval of p99 needs, so it is wide",
            run::first_round_requests()
        )
    } else {
        String::new()
    };
    let mut checks = vec![
        budget_check(TIMED[0], p50, budget.p50_ms, n, &mut settle, ""),
        budget_check(
            TIMED[1],
            p99,
            budget.p99_ms,
            n,
            &mut settle,
            &format!(
                " (p90 {:.2} ms, max {:.2} ms){few}",
                stats::quantile(&ms, 0.9),
                ms.last().copied().unwrap_or(f64::NAN)
            ),
        ),
    ];
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
        for check in checks
            .iter_mut()
            .filter(|c| TIMED.contains(&c.name.as_str()))
        {
            check.message.push_str(&format!(
                "; timed again in a round of its own, after the fleet's shared rounds failed \
                 {failed}"
            ));
        }
    }
    let mut report = SuiteReport::new(Suite::Latency.name(), checks);
    report.metrics = metrics;
    report.limits = [
        ("p50_ms", budget.p50_ms),
        ("p99_ms", budget.p99_ms),
        ("fallback_rate", budget.fallback_rate()),
    ]
    .into_iter()
    .map(|(key, max)| (key.to_owned(), Limit::Max(max)))
    .collect();
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

fn sorted_ms(samples: &[Sample]) -> Vec<f64> {
    let mut ms: Vec<f64> = samples.iter().map(|s| s.ms).collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// The figures a later run compares with: percentiles with their interval
/// ends, the shares of failed and fallback answers (`shares`), the requests
/// and the rate offered.
fn figures(
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
struct Settle {
    /// How much another round would narrow an interval (1: no round left).
    shrink: f64,
    undecided: bool,
}

impl Settle {
    /// The check of an estimate against its limit. An inconclusive one is
    /// skipped with why, and asks for another round if that could settle it.
    fn check(&mut self, name: &str, e: Estimate, limit: f64, text: String, beyond: &str) -> Check {
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
fn count(samples: &[Sample]) -> (Vec<&str>, Vec<&str>) {
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

fn errors_check(failures: &[&str], n: u64, rate: f64) -> Check {
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

fn fallback_check(fallbacks: &[&str], n: u64, limit: f64) -> Check {
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

/// p50 and p99 against the last release measured in the same run, pair by pair.
fn paired(
    model: &ModelUnderTest,
    budget: &LatencyBudget,
    candidate: &[Sample],
    baseline: &Baseline,
    samples: &[Sample],
    checks: &mut Vec<Check>,
    settle: &mut Settle,
) -> (Vec<(String, f64)>, String) {
    let (c, b) = pairs(candidate, samples);
    let seed = stable_hash(model.bundle.name());
    // A regression fails only when the paired bootstrap and the unpaired
    // order statistics both put it beyond the limit: a stall that lands on
    // one version of a pair only can make the bootstrap of a tail percentile
    // confidently wrong. The unpaired bounds of p50 are taken at 95 %, those
    // of p99 at 99.9 %: p99's reach the limit, and a fleet makes hundreds of
    // these comparisons per run, so at 95 % one would cry wolf every few runs
    // (benches/README.md). A comparison passes when the bootstrap's upper end
    // is within the limit: the unpaired upper bound of p99 from a few hundred
    // requests is the slowest request of all, which would settle nothing.
    let quantiles = [(0.5, stats::Z95), (0.99, stats::Z999)];
    let (mut c_sorted, mut b_sorted) = (c.clone(), b.clone());
    c_sorted.sort_by(f64::total_cmp);
    b_sorted.sort_by(f64::total_cmp);
    let qs = quantiles.map(|(q, _)| q);
    let ratios: Vec<Estimate> = stats::paired_ratios(&c, &b, &qs, RESAMPLES, seed)
        .into_iter()
        .zip(quantiles)
        .map(|(paired, (q, z))| paired.judged_with(stats::ratio_bounds(&c_sorted, &b_sorted, q, z)))
        .collect();
    let against = match baseline {
        Baseline::Version(v) => format!("version {v}, measured in the same run"),
        Baseline::Target(url) => format!("served apart at {url}, measured in the same run"),
    };
    let mut metrics = Vec::new();
    for ((label, key, limit, level), ratio) in [
        ("p50", "p50_ratio", budget.p50_regression(), "95%"),
        ("p99", "p99_ratio", budget.p99_regression(), "99.9%"),
    ]
    .into_iter()
    .zip(ratios)
    {
        let name = format!("{label} against the last release");
        let text = format!(
            "{label} {:.2}× [{:.2}, {:.2}] the last release ({against}, {} pairs; lower end: \
                the paired bootstrap's 95% and the order statistics' {level}, the lower; upper \
                end: the paired bootstrap's 95%); limit {:.2}×",
            ratio.value,
            ratio.low,
            ratio.high,
            c.len(),
            1.0 + limit
        );
        checks.push(settle.check(&name, ratio, 1.0 + limit, text, SLOWER));
        metrics.extend([
            (key.to_owned(), ratio.value),
            (format!("{key}_low"), ratio.low),
            (format!("{key}_high"), ratio.high),
        ]);
    }
    (metrics, format!("paired: {against}"))
}

/// The latencies of the samples both arms have, in pair order.
fn pairs(candidate: &[Sample], baseline: &[Sample]) -> (Vec<f64>, Vec<f64>) {
    let theirs: BTreeMap<u64, f64> = baseline.iter().map(|s| (s.index, s.ms)).collect();
    candidate
        .iter()
        .filter_map(|s| theirs.get(&s.index).map(|b| (s.ms, *b)))
        .unzip()
}

/// p50 and p99 beside the baseline report's, from another run: shown, not
/// judged. Two runs do not share their noise: a model cheaper than the last
/// release's measured p50 0.51 ms against the 0.40 ms of a report made
/// minutes earlier on the same machine, and a tail of a few hundred requests
/// moved several-fold (1.8 ms, then 11 ms), more than any regression limit.
/// A verdict from them would depend on the machine's load, so only the last
/// release measured in the same run is judged (`paired`).
fn against_report(
    model: &ModelUnderTest,
    p50: Estimate,
    p99: Estimate,
    no_baseline: Option<&str>,
    checks: &mut Vec<Check>,
) -> String {
    let why = no_baseline.unwrap_or("no last release was served");
    let mut method = "none".to_owned();
    for (label, e) in [("p50", p50), ("p99", p99)] {
        let name = format!("{label} against the last release");
        let key = format!("{label}_ms");
        match model.baseline_metric(Suite::Latency, &key) {
            Ok(base) => {
                method = "baseline report: shown, not judged".to_owned();
                checks.push(Check::skipped(
                    &name,
                    Skip::NotCompared,
                    format!(
                        "not compared: the last release was not served in this run: {why}; \
                        {label} {e} ms beside the baseline report's {base:.2} ms, from another \
                        run, which moves with the machine's load and is not judged; bring the \
                        last release in with --baseline-models, or keep it in the repository"
                    ),
                ));
            }
            Err((skip, reason)) => {
                checks.push(Check::skipped(&name, skip, format!("{why}, and {reason}")));
            }
        }
    }
    method
}

/// The first bin of the latency histogram, in µs: below a typical request's
/// time, so that a sub-millisecond server's spread shows in the chart.
const FIRST_BIN_US: u64 = 50;

/// Requests per bin, `[[upper bound in ms, count], ...]`, from one HDR
/// histogram: bins 1.5 times wider each, from [`FIRST_BIN_US`].
fn histogram(ms: &[f64]) -> Vec<serde_json::Value> {
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

/// FNV-1a: a seed that is the same for a model on every machine and release.
pub(crate) fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
