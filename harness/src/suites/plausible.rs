//! The range every measured figure can take. A figure outside it is a
//! broken measurement (a subtraction gone below zero, a timer read twice,
//! a count of the wrong thing), never an improvement: the suite that
//! reported it gains a failed check, `possible figures`, naming the figure
//! and its value, so that no verdict rests on it (`docs/harness.md`,
//! "Impossible figures").

use crate::report::{Check, SuiteReport};

/// The check a suite gains when one of its figures cannot be true.
pub(crate) const NAME: &str = "possible figures";

/// What a figure must be, by its name in a suite's metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Range {
    /// Greater than zero: a size, a time, a ratio of two times.
    Positive,
    /// At least zero: an error, a count.
    NonNegative,
    /// A share of something, or a score bounded by one.
    Share,
    /// Anything finite: a growth, which may be negative.
    Finite,
}

impl Range {
    fn of(metric: &str) -> Range {
        let ends = |tail: &str| metric.ends_with(tail);
        if ends("_growth_bytes") {
            Range::Finite
        } else if ends("_bytes")
            || ends("_ms")
            || ends("_ms_low")
            || ends("_ms_high")
            // A ratio of two latencies; other ratios (of differences) may be 0.
            || metric.starts_with("p50_ratio")
            || metric.starts_with("p99_ratio")
            || metric == "rate_per_s"
        {
            Range::Positive
        } else if ends("_rate")
            || ends("_share")
            || matches!(metric, "accuracy" | "brier" | "roc_auc")
        {
            Range::Share
        } else if matches!(
            metric,
            "mae" | "rmse" | "mape" | "log_loss" | "live_error" | "psi"
        ) || ends("_ratio")
            || ends("requests")
            || ends("rows")
        {
            Range::NonNegative
        } else {
            Range::Finite
        }
    }

    /// Why `value` is outside the range, if it is.
    fn refuses(self, value: f64) -> Option<&'static str> {
        if !value.is_finite() {
            return Some("not a number");
        }
        match self {
            Range::Positive if value <= 0.0 => Some("must be above zero"),
            Range::NonNegative if value < 0.0 => Some("cannot be negative"),
            Range::Share if !(0.0..=1.0).contains(&value) => Some("must lie in [0, 1]"),
            _ => None,
        }
    }
}

/// Figures that must come in order, each at most the next.
const ORDERED: [&[&str]; 3] = [
    &["p50_ms", "p90_ms", "p99_ms", "max_ms"],
    &["p50_ms_low", "p50_ms", "p50_ms_high"],
    &["p99_ms_low", "p99_ms", "p99_ms_high"],
];

/// Every figure of `report` that cannot be true, and why.
fn impossible(report: &SuiteReport) -> Vec<String> {
    let metrics = &report.metrics;
    let mut found: Vec<String> = metrics
        .iter()
        .filter_map(|(name, &value)| {
            let why = Range::of(name).refuses(value)?;
            Some(format!("{name} = {value} {why}"))
        })
        .collect();
    for chain in ORDERED {
        let present: Vec<(&str, f64)> = chain
            .iter()
            .filter_map(|name| metrics.get(*name).map(|v| (*name, *v)))
            .collect();
        for pair in present.windows(2) {
            let ((a, x), (b, y)) = (pair[0], pair[1]);
            if x > y {
                found.push(format!("{a} = {x} above {b} = {y}"));
            }
        }
    }
    found
}

/// Adds a failed `possible figures` check to `report` when a figure cannot
/// be true; a report whose figures are all possible is left as it is.
pub(crate) fn judge(report: &mut SuiteReport) {
    let found = impossible(report);
    if found.is_empty() {
        return;
    }
    let message = format!("a broken measurement: {}", found.join("; "));
    report.checks.push(Check::new(NAME, false, message));
    report.verdict = crate::report::Verdict::of(report.checks.iter().map(|c| c.verdict));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Verdict;

    fn report(metrics: &[(&str, f64)]) -> SuiteReport {
        let mut r = SuiteReport::new("size", vec![Check::new("max_model_bytes", true, "ok")]);
        for (k, v) in metrics {
            r.metrics.insert((*k).to_owned(), *v);
        }
        r
    }

    #[test]
    fn a_model_that_costs_nothing_fails_and_a_growth_may_be_negative() {
        let mut r = report(&[
            ("memory_bytes", 0.0),
            ("memory_resident_growth_bytes", -3e6),
            ("model_bytes", 480_000.0),
        ]);
        judge(&mut r);
        assert_eq!(r.verdict, Verdict::Failed);
        let check = r.checks.last().expect("a check");
        assert_eq!(check.name, NAME);
        assert_eq!(
            check.message,
            "a broken measurement: memory_bytes = 0 must be above zero"
        );
    }

    #[test]
    fn latency_figures_out_of_order_or_out_of_range_fail() {
        let mut r = report(&[
            ("p50_ms", 4.0),
            ("p90_ms", 3.0),
            ("p99_ms", 5.0),
            ("error_rate", 1.5),
            ("p50_ratio", 0.0),
        ]);
        judge(&mut r);
        let message = &r.checks.last().expect("a check").message;
        for part in [
            "error_rate = 1.5 must lie in [0, 1]",
            "p50_ratio = 0 must be above zero",
            "p50_ms = 4 above p90_ms = 3",
        ] {
            assert!(message.contains(part), "{message}");
        }
    }

    #[test]
    fn possible_figures_add_no_check() {
        let mut r = report(&[
            ("p50_ms", 1.0),
            ("p50_ms_low", 0.9),
            ("p50_ms_high", 1.2),
            ("p99_ms", 3.0),
            ("max_ms", 3.0),
            ("fallback_rate", 0.0),
            ("mae", 2.1),
            ("accuracy", 1.0),
            ("requests", 298.0),
            // The fallback may equal the main model where no row reaches.
            ("main_difference_ratio", 0.0),
        ]);
        judge(&mut r);
        assert_eq!((r.checks.len(), r.verdict), (1, Verdict::Passed));
    }
}
