//! The key figures of each model verified, against the last release's and
//! the contract's limit: what summary.md and report.html show as "what
//! changed since the last release".

use crate::human;
use crate::report::{Limit, ModelReport, Report, Verdict};

/// One key figure of one model.
#[derive(Debug, Clone)]
pub struct Figure<'a> {
    pub model: &'a ModelReport,
    pub suite: &'a str,
    /// The name in the suite's metrics: `p99_ms`.
    pub metric: String,
    /// As the reports label it: `p99`.
    pub label: String,
    pub now: f64,
    /// The baseline report's figure, when it has the model and the figure.
    pub baseline: Option<f64>,
    pub limit: Option<Limit>,
    /// The verdict of the checks that judge this figure.
    pub verdict: Verdict,
}

impl Figure<'_> {
    /// The figure in its unit: `0.59 ms`, `837.8 kB`.
    pub fn show(&self, value: f64) -> String {
        human::metric(&self.metric, value)
    }

    /// The change against the baseline, relative to it.
    fn change(&self) -> Option<f64> {
        let base = self.baseline?;
        Some((self.now - base) / base.abs().max(f64::MIN_POSITIVE))
    }

    /// The change against the baseline, relative, positive when worse:
    /// higher is worse but where the limit is a minimum.
    pub fn worse_by(&self) -> Option<f64> {
        let relative = self.change()?;
        Some(match self.limit {
            Some(Limit::Min(_)) => -relative,
            _ => relative,
        })
    }

    /// The change against the baseline as a signed percentage of the figure.
    pub fn delta(&self) -> Option<String> {
        self.change().map(human::change)
    }

    /// `max 25 ms`.
    pub fn limit_text(&self) -> Option<String> {
        self.limit
            .map(|l| format!("{} {}", l.label(), self.show(l.value())))
    }
}

/// What a key figure is: its suite, metric and label, and the checks that
/// judge it. Quality's metric is the contract's, whatever its name.
const KEY: [(&str, &str, &str, [&str; 2]); 4] = [
    (
        "latency",
        "p50_ms",
        "p50",
        ["p50", "p50 against the last release"],
    ),
    (
        "latency",
        "p99_ms",
        "p99",
        ["p99", "p99 against the last release"],
    ),
    (
        "size",
        "model_bytes",
        "artifact",
        ["max_model_bytes", "growth against the baseline"],
    ),
    (
        "size",
        "memory_bytes",
        "memory",
        ["max_memory_bytes", "memory growth against the baseline"],
    ),
];

/// Every key figure of every model of `report`, worst first: failed
/// figures, then by how much worse than the baseline.
pub fn key_figures<'a>(report: &'a Report, baseline: Option<&Report>) -> Vec<Figure<'a>> {
    let mut figures = Vec::new();
    for model in &report.models {
        // Quality's judged metrics: those the contract bounds. The others a
        // quality suite reports (a classifier's four) stay in report.json.
        let quality = model.suite("quality").into_iter().flat_map(|s| {
            s.metrics
                .keys()
                .filter(|m| s.limits.contains_key(*m))
                .map(|m| {
                    (
                        "quality",
                        m.as_str(),
                        m.as_str(),
                        [m.as_str(), "against the baseline"],
                    )
                })
        });
        for (suite, metric, label, checks) in KEY.into_iter().chain(quality) {
            let Some(found) = model.suite(suite) else {
                continue;
            };
            let Some(&now) = found.metrics.get(metric) else {
                continue;
            };
            // Where the contract bounds several metrics, each comparison with
            // the baseline is named after its metric.
            let own = format!("{metric} against the baseline");
            let judged = found
                .checks
                .iter()
                .filter(|c| checks.contains(&c.name.as_str()) || c.name == own);
            figures.push(Figure {
                model,
                suite,
                metric: metric.to_owned(),
                label: label.to_owned(),
                now,
                baseline: baseline
                    .and_then(|b| b.model(&model.name))
                    .and_then(|m| m.suite(suite))
                    .and_then(|s| s.metrics.get(metric).copied()),
                limit: found.limits.get(metric).copied(),
                verdict: Verdict::of(judged.map(|c| c.verdict)),
            });
        }
    }
    figures.sort_by(|a, b| {
        let failed = |f: &Figure<'_>| f.verdict != Verdict::Failed;
        let worse = |f: &Figure<'_>| f.worse_by().unwrap_or(f64::NEG_INFINITY);
        failed(a)
            .cmp(&failed(b))
            .then(worse(b).total_cmp(&worse(a)))
    });
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_figure_comes_first_and_a_worse_one_next() {
        let baseline = Report::committed_baseline();
        let mut report = baseline.clone();
        fn latency(r: &mut Report, m: usize) -> &mut crate::SuiteReport {
            r.models[m]
                .suites
                .iter_mut()
                .find(|s| s.suite == "latency")
                .expect("a latency suite")
        }
        // Model 1's p99 doubles; model 2's artifact fails its budget.
        let p99 = latency(&mut report, 1).metrics["p99_ms"];
        latency(&mut report, 1)
            .metrics
            .insert("p99_ms".into(), p99 * 2.0);
        let size = report.models[2]
            .suites
            .iter_mut()
            .find(|s| s.suite == "size")
            .expect("a size suite");
        for check in &mut size.checks {
            if check.name == "max_model_bytes" {
                check.verdict = Verdict::Failed;
            }
        }
        let figures = key_figures(&report, Some(&baseline));
        let first = &figures[0];
        assert_eq!(
            (first.model.name.as_str(), first.label.as_str()),
            (report.models[2].name.as_str(), "artifact")
        );
        assert_eq!(first.verdict, Verdict::Failed);
        let second = &figures[1];
        assert_eq!(
            (second.model.name.as_str(), second.label.as_str()),
            (report.models[1].name.as_str(), "p99")
        );
        assert_eq!(second.delta().as_deref(), Some("+100.0%"));
        assert!(figures[2..].iter().all(|f| f.worse_by() == Some(0.0)));
    }
}
