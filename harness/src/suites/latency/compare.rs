//! "Slower than the last release": on the paired ratio of the two versions
//! measured in the same run, or, where only a baseline report exists, shown
//! beside it and not judged.

use std::collections::BTreeMap;

use preflight_bundle::LatencyBudget;

use super::budgets::Settle;
use super::load::Sample;
use super::stats::{self, Estimate};
use super::{Baseline, stable_hash};
use crate::report::{Check, Skip};
use crate::suites::{ModelUnderTest, Suite};

/// How a failed comparison with the last release begins.
const SLOWER: &str = "slower than the last release: ";
/// Bootstrap resamples of the paired ratios.
const RESAMPLES: usize = 1000;

/// p50 and p99 against the last release measured in the same run, pair by pair.
pub(super) fn paired(
    model: &ModelUnderTest,
    budget: &LatencyBudget,
    candidate: &[Sample],
    baseline: &Baseline,
    samples: &[Sample],
    checks: &mut Vec<Check>,
    settle: &mut Settle,
) -> (Vec<(String, f64)>, String) {
    let (c, b) = pairs(candidate, samples);
    let ratios = ratios(&c, &b, stable_hash(model.bundle.name()));
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

/// p50's and p99's ratios of candidate `c` to baseline `b`, pair by pair,
/// each with the bounds it is judged on.
fn ratios(c: &[f64], b: &[f64], seed: u64) -> Vec<Estimate> {
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
    let (mut c_sorted, mut b_sorted) = (c.to_vec(), b.to_vec());
    c_sorted.sort_by(f64::total_cmp);
    b_sorted.sort_by(f64::total_cmp);
    let qs = quantiles.map(|(q, _)| q);
    stats::paired_ratios(c, b, &qs, RESAMPLES, seed)
        .into_iter()
        .zip(quantiles)
        .map(|(paired, (q, z))| paired.judged_with(stats::ratio_bounds(&c_sorted, &b_sorted, q, z)))
        .collect()
}

/// The latencies of the samples both arms have, in pair order.
pub(super) fn pairs(candidate: &[Sample], baseline: &[Sample]) -> (Vec<f64>, Vec<f64>) {
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
pub(super) fn against_report(
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
