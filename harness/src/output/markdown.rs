//! `summary.md`, for `$GITHUB_STEP_SUMMARY` or a pull request comment: the
//! verdict, the failures, the key figures per model with their change
//! against the last release (the passing models folded in a large fleet),
//! the skips and warnings, and the link to the run's artifacts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::figures::{Figure, key_figures};
use crate::human;
use crate::report::{ModelReport, Report, Verdict};

/// Beyond this many models, the passing ones fold under `<details>`.
pub(super) const UNFOLDED_MODELS: usize = 10;
/// A failure's message is cut to about this many characters; report.html
/// and junit.xml have it whole.
const FAILURE_CHARS: usize = 240;

fn mark(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Passed => "✅ passed",
        Verdict::Failed => "❌ failed",
        Verdict::Skipped => "➖ skipped",
    }
}

/// The summary; `link` is the CI run's page, where the reports are.
pub fn markdown(report: &Report, baseline: Option<&Report>, link: Option<&str>) -> String {
    let mut md = String::new();
    let failed = report
        .models
        .iter()
        .filter(|m| m.verdict == Verdict::Failed)
        .count();
    let verdict = match report.aborted {
        Some(_) => "❌ aborted",
        None => mark(report.verdict),
    };
    let _ = writeln!(md, "# Preflight: {verdict}\n");
    let compared = match (baseline, &report.baseline) {
        (Some(b), path) => format!(
            ", compared with the release of {} (`{}`)",
            human::date(&b.started_at),
            path.as_deref().unwrap_or("baseline")
        ),
        _ => String::new(),
    };
    let over = match report.protocol.as_str() {
        "REST" => String::new(),
        protocol => format!(" over {protocol}"),
    };
    let _ = writeln!(
        md,
        "{} verified against `{}`{over}, {failed} failed{compared}.\n",
        human::plural(report.models.len(), "model"),
        report.target
    );
    if let Some(aborted) = &report.aborted {
        let _ = writeln!(
            md,
            "**The run stopped before a verdict on every model** (exit code {}): {}\n",
            aborted.exit_code, aborted.error
        );
    }
    let failures = report.failures();
    if !failures.is_empty() {
        let _ = writeln!(md, "## Failures\n");
        for (model, suite, check) in failures {
            let _ = writeln!(
                md,
                "- **{} {}** `{}` {}: {}",
                model.name,
                model.version,
                suite.suite,
                check.name,
                human::clip(&check.message, FAILURE_CHARS)
            );
        }
        md.push('\n');
    }
    md.push_str(&figures(report, baseline));
    md.push_str(&skipped(report));
    let warnings: Vec<String> = report
        .models
        .iter()
        .flat_map(|m| {
            m.warnings
                .iter()
                .map(move |w| format!("- **{} {}** {w}", m.name, m.version))
        })
        .collect();
    if !warnings.is_empty() {
        let _ = writeln!(md, "\n## Warnings\n\n{}", warnings.join("\n"));
    }
    if let Some(link) = link {
        let _ = writeln!(
            md,
            "\nreport.html, report.json and junit.xml are among the artifacts of \
             [this run]({link})."
        );
    }
    md
}

/// A row per model: its verdict (the failed suites named) and each key
/// figure with its change against the baseline, a failed figure marked.
fn figures(report: &Report, baseline: Option<&Report>) -> String {
    if report.models.is_empty() {
        return String::new();
    }
    let figures = key_figures(report, baseline);
    let mut labels: Vec<&str> = Vec::new();
    let mut by_model: BTreeMap<(&str, &str), &Figure<'_>> = BTreeMap::new();
    for f in &figures {
        if !labels.contains(&f.label.as_str()) {
            labels.push(&f.label);
        }
        by_model.insert((&f.model.name, &f.label), f);
    }
    // Latency, then quality, then size, whichever failed first.
    let rank = |label: &str| match label {
        "p50" => 0,
        "p99" => 1,
        "artifact" => 3,
        "memory" => 4,
        _ => 2,
    };
    labels.sort_by_key(|l| rank(l));
    let row = |m: &ModelReport| {
        let failed: Vec<&str> = m
            .suites
            .iter()
            .filter(|s| s.verdict == Verdict::Failed)
            .map(|s| s.suite.as_str())
            .collect();
        let verdict = if failed.is_empty() {
            mark(m.verdict).to_owned()
        } else {
            format!("❌ {}", failed.join(", "))
        };
        let cells: Vec<String> = labels
            .iter()
            .map(|label| {
                by_model
                    .get(&(m.name.as_str(), *label))
                    .map_or_else(String::new, |f| cell(f))
            })
            .collect();
        format!(
            "| {} | {} | {verdict} | {} |\n",
            m.name,
            m.version,
            cells.join(" | ")
        )
    };
    let head = format!(
        "| model | version | verdict | {} |\n| --- | --- | --- |{}\n",
        labels.join(" | "),
        " --- |".repeat(labels.len())
    );
    let fold = report.models.len() > UNFOLDED_MODELS;
    let (shown, folded): (Vec<&ModelReport>, Vec<&ModelReport>) = report
        .models
        .iter()
        .partition(|m| !fold || m.verdict == Verdict::Failed);
    let mut md = String::from("## Key figures\n\n");
    if baseline.is_some() {
        md.push_str("Each figure with its change against the last release.\n\n");
    }
    if !shown.is_empty() {
        md.push_str(&head);
        shown.iter().for_each(|m| md.push_str(&row(m)));
    }
    if !folded.is_empty() {
        let _ = write!(
            md,
            "\n<details><summary>{}, none failed</summary>\n\n{head}{}\n</details>\n",
            human::plural(folded.len(), "more model"),
            folded.iter().map(|m| row(m)).collect::<String>()
        );
    }
    md
}

/// `0.59 ms (+3.1%)`, marked when its checks failed.
fn cell(f: &Figure<'_>) -> String {
    let mut text = f.show(f.now);
    if let Some(delta) = f.delta() {
        let _ = write!(text, " ({delta})");
    }
    if f.verdict == Verdict::Failed {
        match f.limit_text() {
            Some(limit) => format!("❌ {text}, {limit}"),
            None => format!("❌ {text}"),
        }
    } else {
        text
    }
}

/// Every skipped check, grouped by suite, check and reason so that a fleet
/// reads in a few lines: skipped is not passed, and the reader sees why.
fn skipped(report: &Report) -> String {
    let groups = report.skip_groups();
    if groups.is_empty() {
        return String::new();
    }
    let mut md = format!(
        "\n## Skipped\n\nNot judged, and why; {}.\n\n",
        report.policy_line()
    );
    for group in &groups {
        let _ = writeln!(
            md,
            "- `{}` {} ({}), {}: {}",
            group.suite,
            group.check,
            group.kind,
            group.models_line(5),
            group.example
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_come_first_and_a_fleet_folds_its_passing_models() {
        let mut report = Report::committed_baseline();
        let first = report.models[0].clone();
        while report.models.len() <= UNFOLDED_MODELS {
            report.models.push(first.clone());
        }
        report.models[1].verdict = Verdict::Failed;
        report.models[1].suites[0].verdict = Verdict::Failed;
        report.models[1].suites[0].checks[0].verdict = Verdict::Failed;
        let failing = format!(
            "| {} | {} | ❌ {} |",
            report.models[1].name, report.models[1].version, report.models[1].suites[0].suite
        );
        let md = markdown(&report, None, Some("https://github.com/o/r/actions/runs/1"));

        let at = |text: &str| {
            md.find(text)
                .unwrap_or_else(|| panic!("no {text:?} in\n{md}"))
        };
        assert!(at("## Failures") < at("## Key figures"), "{md}");
        assert!(at("## Key figures") < at(&failing), "{md}");
        assert!(
            at(&failing) < at("<details>"),
            "the failed model is outside the fold"
        );
        let folded = report.models.len() - 1;
        assert!(md.contains(&format!(
            "<summary>{folded} more models, none failed</summary>"
        )));
        assert!(
            md.trim_end()
                .ends_with("[this run](https://github.com/o/r/actions/runs/1).")
        );

        // A few models are all shown, and without a run there is no link.
        let mut few = Report::committed_baseline();
        few.models.truncate(3);
        let md = markdown(&few, None, None);
        assert!(
            !md.contains("<details>") && !md.contains("this run"),
            "{md}"
        );
    }

    #[test]
    fn a_figure_shows_its_change_and_a_failed_one_its_limit() {
        let baseline = Report::committed_baseline();
        let mut report = baseline.clone();
        let size = report.models[0]
            .suites
            .iter_mut()
            .find(|s| s.suite == "size")
            .expect("a size suite");
        let bytes = size.metrics["model_bytes"];
        size.metrics.insert("model_bytes".into(), bytes * 2.0);
        size.limits
            .insert("model_bytes".into(), crate::report::Limit::Max(bytes * 1.5));
        for check in &mut size.checks {
            if check.name == "max_model_bytes" {
                check.verdict = Verdict::Failed;
            }
        }
        let md = markdown(&report, Some(&baseline), None);
        let expected = format!(
            "❌ {} (+100.0%), max {}",
            human::bytes(bytes * 2.0),
            human::bytes(bytes * 1.5)
        );
        assert!(md.contains(&expected), "no {expected:?} in\n{md}");
        assert!(md.contains("compared with the release of"), "{md}");
    }
}
