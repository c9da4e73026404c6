//! What changed between two reports: `preflight report diff OLD NEW`, and the
//! "changes against the baseline" section of the HTML report.

use std::fmt::Write as _;

use crate::report::{Report, Verdict};

/// A metric change smaller than this, relative, is noise and not listed.
const METRIC_NOISE: f64 = 0.01;

/// One difference between two reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub model: String,
    /// `version`, `parity verdict`, `latency p99_ms`, `model`.
    pub what: String,
    pub before: String,
    pub after: String,
    /// A suite's verdict went to failed: the release got worse.
    pub worse: bool,
}

/// Every difference in models, versions, suite verdicts and metrics.
pub fn changes(old: &Report, new: &Report) -> Vec<Change> {
    let mut changes = Vec::new();
    let change = |model: &str, what: String, before: String, after: String| Change {
        model: model.to_owned(),
        what,
        before,
        after,
        worse: false,
    };
    for m in &new.models {
        let Some(before) = old.model(&m.name) else {
            changes.push(change(
                &m.name,
                "model".into(),
                "absent".into(),
                format!("version {}", m.version),
            ));
            continue;
        };
        if before.version != m.version {
            changes.push(change(
                &m.name,
                "version".into(),
                before.version.to_string(),
                m.version.to_string(),
            ));
        }
        for suite in &m.suites {
            let Some(was) = before.suite(&suite.suite) else {
                continue;
            };
            if was.verdict != suite.verdict {
                changes.push(Change {
                    worse: suite.verdict == Verdict::Failed,
                    ..change(
                        &m.name,
                        format!("{} verdict", suite.suite),
                        was.verdict.as_str().into(),
                        suite.verdict.as_str().into(),
                    )
                });
            }
            for (metric, &value) in &suite.metrics {
                let Some(&previous) = was.metrics.get(metric) else {
                    continue;
                };
                let relative = (value - previous).abs() / previous.abs().max(f64::MIN_POSITIVE);
                if relative > METRIC_NOISE {
                    let percent =
                        (value - previous) / previous.abs().max(f64::MIN_POSITIVE) * 100.0;
                    changes.push(change(
                        &m.name,
                        format!("{} {metric}", suite.suite),
                        number(previous),
                        format!("{} ({percent:+.1}%)", number(value)),
                    ));
                }
            }
        }
    }
    for m in &old.models {
        if new.model(&m.name).is_none() {
            changes.push(change(
                &m.name,
                "model".into(),
                format!("version {}", m.version),
                "absent".into(),
            ));
        }
    }
    changes
}

/// Four decimals, or scientific notation where those would not show the figure.
fn number(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e7) {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// The changes as aligned text lines, or a line saying there are none.
pub fn render(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no changes\n".to_owned();
    }
    let width = |f: &dyn Fn(&Change) -> usize| changes.iter().map(f).max().unwrap_or(0);
    let (model, what, before) = (
        width(&|c| c.model.len()),
        width(&|c| c.what.len()),
        width(&|c| c.before.len()),
    );
    let mut out = String::new();
    for c in changes {
        let _ = writeln!(
            out,
            "{:<model$}  {:<what$}  {:>before$} → {}",
            c.model, c.what, c.before, c.after
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_gone_to_failed_is_worse_and_nothing_else_is() {
        let old = Report::committed_baseline();
        assert!(changes(&old, &old).is_empty());

        let mut new = old.clone();
        let suite = &mut new.models[0].suites[0];
        assert_eq!(suite.verdict, Verdict::Passed, "the baseline passes");
        suite.verdict = Verdict::Failed;
        let found = changes(&old, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].worse);
        // Back from failed to passed is a change, and not a worse one.
        let found = changes(&new, &old);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!found[0].worse);
    }
}
