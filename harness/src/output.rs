//! The report files, each written whole to a temporary name and renamed, so
//! a reader never sees half a report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::report::{Report, Verdict};

/// Writes `report.json`, `summary.md`, `junit.xml` and `report.html` into
/// `out`; the baseline, where given, is what the HTML compares with.
pub fn write_all(
    report: &Report,
    baseline: Option<&Report>,
    out: &Path,
) -> Result<Vec<PathBuf>, String> {
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())? + "\n";
    let files = [
        ("report.json", json),
        ("summary.md", markdown(report, run_link().as_deref())),
        ("junit.xml", junit(report)),
        ("report.html", crate::html::render_html(report, baseline)),
    ];
    files
        .into_iter()
        .map(|(name, text)| write_atomic(&out.join(name), &text))
        .collect()
}

fn write_atomic(path: &Path, text: &str) -> Result<PathBuf, String> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    Ok(path.to_path_buf())
}

fn mark(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Passed => "✅ passed",
        Verdict::Failed => "❌ failed",
        Verdict::Skipped => "➖ skipped",
    }
}

/// Beyond this many models, the passing ones fold under `<details>`.
const UNFOLDED_MODELS: usize = 10;

/// The link to this CI run's page, where its artifacts are, on GitHub
/// Actions.
fn run_link() -> Option<String> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    Some(format!(
        "{}/{}/actions/runs/{}",
        var("GITHUB_SERVER_URL")?,
        var("GITHUB_REPOSITORY")?,
        var("GITHUB_RUN_ID")?
    ))
}

/// The summary for a pull request comment or `$GITHUB_STEP_SUMMARY`: the
/// verdict, the failures, the verdicts per model (the passing ones folded
/// in a large fleet), the skips and warnings, and the link to the run's
/// artifacts (`link`).
pub fn markdown(report: &Report, link: Option<&str>) -> String {
    let mut md = String::new();
    let failed = report
        .models
        .iter()
        .filter(|m| m.verdict == Verdict::Failed)
        .count();
    let _ = writeln!(md, "# Preflight: {}\n", mark(report.verdict));
    let _ = writeln!(
        md,
        "{} {} verified against `{}`, {failed} failed.\n",
        report.models.len(),
        if report.models.len() == 1 {
            "model"
        } else {
            "models"
        },
        report.target
    );
    let failures: Vec<String> = report
        .models
        .iter()
        .flat_map(|m| {
            m.suites
                .iter()
                .filter(|s| s.verdict == Verdict::Failed)
                .map(move |s| {
                    format!(
                        "- **{} {}** `{}`: {}",
                        m.name,
                        m.version,
                        s.suite,
                        s.failures()
                    )
                })
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(md, "## Failures\n\n{}\n", failures.join("\n"));
    }
    let fold = report.models.len() > UNFOLDED_MODELS;
    let (shown, folded): (Vec<_>, Vec<_>) = report
        .models
        .iter()
        .partition(|m| !fold || m.verdict == Verdict::Failed);
    let suites = report.suite_names();
    let table = |models: &[&crate::report::ModelReport]| {
        let mut t = format!("| model | version | {} |\n", suites.join(" | "));
        let _ = writeln!(t, "| --- | --- |{}", " --- |".repeat(suites.len()));
        for model in models {
            let cells: Vec<&str> = suites
                .iter()
                .map(|s| model.suite(s).map_or("", |r| mark(r.verdict)))
                .collect();
            let _ = writeln!(
                t,
                "| {} | {} | {} |",
                model.name,
                model.version,
                cells.join(" | ")
            );
        }
        t
    };
    if !shown.is_empty() {
        md.push_str(&table(&shown));
    }
    if !folded.is_empty() {
        let _ = write!(
            md,
            "\n<details><summary>{} more models, none failed</summary>\n\n{}\n</details>\n",
            folded.len(),
            table(&folded)
        );
    }
    md.push_str(&skipped_markdown(report));
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
            "\nThe reports (report.html, report.json, junit.xml) are among the artifacts of \
             [this run]({link})."
        );
    }
    md
}

/// Every skipped check, grouped by suite, check and reason so that a fleet
/// reads in a few lines: skipped is not passed, and the reader sees why.
fn skipped_markdown(report: &Report) -> String {
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

/// JUnit XML: a testsuite per model, a testcase per check.
pub fn junit(report: &Report) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let count = |f: &dyn Fn(Verdict) -> bool| {
        report
            .models
            .iter()
            .flat_map(|m| &m.suites)
            .flat_map(|s| &s.checks)
            .filter(|c| f(c.verdict))
            .count()
    };
    let _ = writeln!(
        xml,
        "<testsuites name=\"preflight\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" \
        time=\"{:.3}\">",
        count(&|_| true),
        count(&|v| v == Verdict::Failed),
        count(&|v| v == Verdict::Skipped),
        report.duration_ms / 1000.0
    );
    for model in &report.models {
        let checks: Vec<_> = model
            .suites
            .iter()
            .flat_map(|s| s.checks.iter().map(move |c| (s, c)))
            .collect();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            escape(&format!("{} {}", model.name, model.version)),
            checks.len(),
            checks
                .iter()
                .filter(|(_, c)| c.verdict == Verdict::Failed)
                .count(),
            checks
                .iter()
                .filter(|(_, c)| c.verdict == Verdict::Skipped)
                .count(),
            model.suites.iter().map(|s| s.duration_ms).sum::<f64>() / 1000.0
        );
        for (suite, check) in checks {
            let _ = write!(
                xml,
                "    <testcase classname=\"{}.{}\" name=\"{}\">",
                escape(&model.name),
                suite.suite,
                escape(&check.name)
            );
            match check.verdict {
                Verdict::Passed => {}
                Verdict::Failed => {
                    let _ = write!(
                        xml,
                        "<failure message=\"{}\">{}</failure>",
                        escape(&check.message),
                        escape(&check.message)
                    );
                }
                Verdict::Skipped => {
                    let _ = write!(xml, "<skipped message=\"{}\"/>", escape(&check.message));
                }
            }
            let _ = writeln!(xml, "</testcase>");
        }
        let _ = writeln!(xml, "  </testsuite>");
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
        let failing = format!(
            "| {} | {} |",
            report.models[1].name, report.models[1].version
        );
        let md = markdown(&report, Some("https://github.com/o/r/actions/runs/1"));

        let at = |text: &str| {
            md.find(text)
                .unwrap_or_else(|| panic!("no {text:?} in\n{md}"))
        };
        assert!(at("## Failures") < at(&failing), "{md}");
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
        let md = markdown(&Report::committed_baseline(), None);
        assert!(
            !md.contains("<details>") && !md.contains("this run"),
            "{md}"
        );
    }
}
