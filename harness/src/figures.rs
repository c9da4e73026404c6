//! The key figures of each model verified, against the last release's and
//! the contract's limit: what summary.md and report.html show as "what
//! changed since the last release".

use crate::human;
use crate::report::{Limit, ModelReport, Report, SuiteReport, Verdict};
use crate::suites::Suite;
use crate::suites::descriptor::{Comparison, Descriptor, KeyFigures};

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
    /// The last release's figure, and how alike the two were measured.
    pub compared: Option<Compared>,
    pub limit: Option<Limit>,
    /// The verdict of the checks that judge this figure.
    pub verdict: Verdict,
}

/// The last release's figure, and whether a change from it means anything.
#[derive(Debug, Clone, PartialEq)]
pub enum Compared {
    /// Measured in this run beside the candidate, request by request:
    /// `ratio` is the paired estimate of now over the last release's, and
    /// the last release's figure is `now / ratio`. A ratio whose interval
    /// could not settle the comparison (`judged` false) is no change.
    Paired { ratio: f64, judged: bool },
    /// The baseline report's figure, measured alike: an artifact's bytes, a
    /// score on the same hold-out, memory on the same kind of target.
    Alike(f64),
    /// The baseline report's figure, measured otherwise (in another run, or
    /// on another kind of target): context, never a change.
    Context { baseline: f64, how: String },
}

impl Figure<'_> {
    /// The last release's figure, whatever the method.
    pub fn baseline(&self) -> Option<f64> {
        Some(match self.compared.as_ref()? {
            Compared::Paired { ratio, .. } => self.now / ratio,
            Compared::Alike(b) | Compared::Context { baseline: b, .. } => *b,
        })
    }

    /// The last release's figure as the reports show it: a figure measured
    /// otherwise says how.
    pub fn baseline_text(&self) -> Option<String> {
        let shown = self.show(self.baseline()?);
        Some(match self.compared.as_ref()? {
            Compared::Paired { .. } => format!("{shown} (this run)"),
            Compared::Alike(_) => shown,
            Compared::Context { how, .. } => format!("{shown} ({how})"),
        })
    }

    /// The figure in its unit: `0.59 ms`, `837.8 kB`.
    pub fn show(&self, value: f64) -> String {
        human::metric(&self.metric, value)
    }

    /// The change against the last release, relative to it: only between
    /// figures measured alike.
    fn change(&self) -> Option<f64> {
        match self.compared.as_ref()? {
            Compared::Paired { ratio, judged } => judged.then(|| ratio - 1.0),
            Compared::Alike(base) => Some((self.now - base) / base.abs().max(f64::MIN_POSITIVE)),
            Compared::Context { .. } => None,
        }
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

/// Every key figure of every model of `report`, worst first: failed
/// figures, then by how much worse than the baseline. Which figures are
/// key, and how each is compared, is each suite's descriptor's word.
pub fn key_figures<'a>(report: &'a Report, baseline: Option<&Report>) -> Vec<Figure<'a>> {
    let mut figures = Vec::new();
    for model in &report.models {
        for found in &model.suites {
            let Some(suite) = Suite::named(&found.suite) else {
                continue;
            };
            for key in keys(suite.descriptor(), found) {
                let Some(&now) = found.metrics.get(&key.metric) else {
                    continue;
                };
                let judged = found.checks.iter().filter(|c| key.checks.contains(&c.name));
                figures.push(Figure {
                    model,
                    suite: &found.suite,
                    now,
                    compared: compared(report, baseline, model, found, &key),
                    limit: found.limits.get(&key.metric).copied(),
                    verdict: Verdict::of(judged.map(|c| c.verdict)),
                    metric: key.metric,
                    label: key.label,
                });
            }
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

/// One key figure of a suite's report, as its descriptor says it.
struct Key {
    metric: String,
    label: String,
    checks: Vec<String>,
    compared: Comparison,
}

/// The key figures `descriptor` names in `found`: its listed ones, or each
/// metric the contract bounds, judged by its own check and by its
/// comparison with the baseline (named after the metric where the contract
/// bounds several).
fn keys(descriptor: &Descriptor, found: &SuiteReport) -> Vec<Key> {
    match &descriptor.key_figures {
        KeyFigures::None => Vec::new(),
        KeyFigures::Listed(listed) => listed
            .iter()
            .map(|k| Key {
                metric: k.metric.to_owned(),
                label: k.label.to_owned(),
                checks: k.checks.map(str::to_owned).to_vec(),
                compared: k.compared,
            })
            .collect(),
        KeyFigures::Bounded => found
            .metrics
            .keys()
            .filter(|m| found.limits.contains_key(*m))
            .map(|m| Key {
                metric: m.clone(),
                label: m.clone(),
                checks: vec![
                    m.clone(),
                    "against the baseline".to_owned(),
                    format!("{m} against the baseline"),
                ],
                compared: Comparison::Alike,
            })
            .collect(),
    }
}

/// How a key figure of `model` compares with the last release's: paired
/// in this run where its suite timed the two, else the baseline report's
/// figure, alike or as context.
fn compared(
    report: &Report,
    baseline: Option<&Report>,
    model: &ModelReport,
    found: &SuiteReport,
    key: &Key,
) -> Option<Compared> {
    let paired = key.compared == Comparison::Paired;
    if paired && let Some(&ratio) = found.metrics.get(&format!("{}_ratio", key.label)) {
        let check = format!("{} against the last release", key.label);
        let judged = found
            .checks
            .iter()
            .any(|c| c.name == check && c.verdict != Verdict::Skipped);
        return Some(Compared::Paired { ratio, judged });
    }
    let old = baseline?;
    let figure = *old
        .model(&model.name)?
        .suite(&found.suite)?
        .metrics
        .get(&key.metric)?;
    let elsewhere = old.target_kind() != report.target_kind();
    Some(match key.compared {
        Comparison::Paired => Compared::Context {
            baseline: figure,
            how: "another run".to_owned(),
        },
        Comparison::OnTarget if elsewhere => Compared::Context {
            baseline: figure,
            how: format!("on a {} target", old.target_kind()),
        },
        Comparison::OnTarget | Comparison::Alike => Compared::Alike(figure),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Skip;

    fn suite<'a>(r: &'a mut Report, m: usize, name: &str) -> &'a mut SuiteReport {
        r.models[m]
            .suites
            .iter_mut()
            .find(|s| s.suite == name)
            .expect("the suite")
    }

    /// The committed baseline, as if no last release had been timed beside
    /// it: its latency then has no paired ratio.
    fn unpaired() -> Report {
        let mut report = Report::committed_baseline();
        for m in 0..report.models.len() {
            suite(&mut report, m, "latency")
                .metrics
                .retain(|k, _| !k.contains("_ratio"));
        }
        report
    }

    #[test]
    fn a_failed_figure_comes_first_and_a_worse_one_next() {
        let baseline = Report::committed_baseline();
        let mut report = unpaired();
        // Model 1 was timed at twice its last release in this run; model
        // 2's artifact fails its budget.
        let latency = suite(&mut report, 1, "latency");
        latency.metrics.insert("p99_ratio".into(), 2.0);
        for check in &mut latency.checks {
            if check.name == "p99 against the last release" {
                (check.verdict, check.skip) = (Verdict::Passed, None);
            }
        }
        for check in &mut suite(&mut report, 2, "size").checks {
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
        assert!(
            second
                .baseline_text()
                .is_some_and(|t| t.ends_with("(this run)")),
            "{:?}",
            second.baseline_text()
        );
        // Every other figure is the same as the baseline's, or not alike.
        assert!(
            figures[2..]
                .iter()
                .all(|f| f.worse_by().unwrap_or(0.0) == 0.0)
        );
    }

    #[test]
    fn a_figure_measured_otherwise_is_context_never_a_change() {
        let baseline = Report::committed_baseline();
        let mut report = unpaired();
        // Another run, on another kind of target: p99 ten times the
        // report's, memory a third of it.
        report.target = "process".to_owned();
        let p99 = suite(&mut report, 0, "latency").metrics["p99_ms"];
        suite(&mut report, 0, "latency")
            .metrics
            .insert("p99_ms".into(), p99 * 10.0);
        let memory = suite(&mut report, 0, "size").metrics["memory_bytes"];
        suite(&mut report, 0, "size")
            .metrics
            .insert("memory_bytes".into(), memory / 3.0);
        let figures = key_figures(&report, Some(&baseline));
        let of = |label: &str| {
            figures
                .iter()
                .find(|f| f.model.name == report.models[0].name && f.label == label)
                .expect("the figure")
        };
        for (label, how) in [
            ("p99", "(another run)"),
            ("memory", "(on a container target)"),
        ] {
            let f = of(label);
            assert_eq!((f.delta(), f.worse_by()), (None, None), "{label}");
            let text = f.baseline_text().unwrap_or_default();
            assert!(text.ends_with(how), "{label}: {text}");
        }
        // The artifact's bytes and the hold-out score are alike anywhere.
        assert_eq!(of("artifact").delta().as_deref(), Some("+0.0%"));

        // Paired in this run, but not settled: no change either.
        let latency = suite(&mut report, 0, "latency");
        latency.metrics.insert("p50_ratio".into(), 1.5);
        for check in &mut latency.checks {
            if check.name == "p50 against the last release" {
                (check.verdict, check.skip) = (Verdict::Skipped, Some(Skip::Inconclusive));
            }
        }
        let figures = key_figures(&report, Some(&baseline));
        let p50 = figures
            .iter()
            .find(|f| f.model.name == report.models[0].name && f.label == "p50")
            .expect("p50");
        assert_eq!(p50.delta(), None);
        assert!(
            p50.baseline_text()
                .is_some_and(|t| t.ends_with("(this run)"))
        );
    }
}
