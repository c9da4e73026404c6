//! What `preflight verify` shows while it runs, nextest-style: a line per
//! suite as it ends (`[ 12/48] PASS  eta-madrid 2  parity  0.1s`), a
//! progress bar with the total and an ETA on a terminal, and at the end one
//! summary line, the failures, and where the reports are. Colour on a
//! terminal unless `NO_COLOR` is set; plain lines in CI logs.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressStyle};

use crate::human;
use crate::progress::{Event, Progress};
use crate::report::{Report, SuiteReport, Verdict};

/// The failures listed again at the end, at most.
const LISTED_FAILURES: usize = 20;

#[derive(Debug)]
pub struct Terminal {
    bar: Option<ProgressBar>,
    colour: bool,
    done: AtomicUsize,
    total: AtomicUsize,
}

impl Terminal {
    /// For stderr: a bar and colour when it is a terminal.
    pub fn stderr() -> Arc<Self> {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar.set_message("starting the endpoint");
            bar
        });
        Arc::new(Self {
            bar,
            colour: colour(),
            done: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
        })
    }

    /// For the closing lines only, as `report merge` prints them: no bar.
    pub fn summary_only() -> Arc<Self> {
        Arc::new(Self {
            bar: None,
            colour: colour(),
            done: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
        })
    }

    /// The progress that `verify` tells.
    pub fn progress(self: &Arc<Self>) -> Progress {
        let terminal = Arc::clone(self);
        Arc::new(move |event| terminal.event(event))
    }

    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Planned { suites, at } => {
                self.total.store(*suites, Ordering::Relaxed);
                let line = format!("{suites} suites against {at}");
                match &self.bar {
                    Some(bar) => bar.println(line),
                    None => eprintln!("{line}"),
                }
                if let Some(bar) = &self.bar {
                    bar.set_length(*suites as u64);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{elapsed:>4} [{bar:30}] {pos}/{len} suites, ETA {eta} {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_message("");
                }
            }
            Event::SuiteEnded {
                model,
                version,
                report,
            } => {
                let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
                let total = self.total.load(Ordering::Relaxed);
                let line = self.line(n, total, model, *version, report);
                match &self.bar {
                    Some(bar) => {
                        bar.println(line);
                        bar.set_position(n as u64);
                    }
                    None => eprintln!("{line}"),
                }
            }
        }
    }

    /// `[ 12/48] PASS  eta-madrid 2  parity  0.1s`, with the failed checks
    /// below a failed suite.
    pub fn line(
        &self,
        n: usize,
        total: usize,
        model: &str,
        version: u64,
        report: &SuiteReport,
    ) -> String {
        let width = total.to_string().len();
        let (word, colour) = match report.verdict {
            Verdict::Passed => ("PASS", AnsiColor::Green),
            Verdict::Failed => ("FAIL", AnsiColor::Red),
            Verdict::Skipped => ("SKIP", AnsiColor::Yellow),
        };
        let mut line = format!(
            "[{n:>width$}/{total}] {}  {:<24} {:<13} {:>7}",
            self.paint(word, Style::new().fg_color(Some(colour.into())).bold()),
            format!("{model} {version}"),
            report.suite,
            format!("{:.3}s", report.duration_ms / 1000.0),
        );
        for check in report
            .checks
            .iter()
            .filter(|c| c.verdict == Verdict::Failed)
        {
            let _ = write!(
                line,
                "\n{:pad$}{}: {}",
                "",
                check.name,
                human::clip(&check.message, 200),
                pad = width * 2 + 4
            );
        }
        line
    }

    fn paint(&self, text: &str, style: Style) -> String {
        if self.colour {
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    }

    /// Clears the progress bar before the summary.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// The closing lines: the counts, the failures, the reports, and the
    /// release's verdict.
    pub fn summary(&self, report: &Report, files: &[PathBuf]) -> String {
        let suites: Vec<&SuiteReport> = report.models.iter().flat_map(|m| &m.suites).collect();
        let count = |v: Verdict| suites.iter().filter(|s| s.verdict == v).count();
        let failed_models = report
            .models
            .iter()
            .filter(|m| m.verdict == Verdict::Failed)
            .count();
        let mut out = "─".repeat(60) + "\n";
        if report.aborted.is_none() || !report.models.is_empty() {
            let _ = writeln!(
                out,
                "     Summary [{:>7}] {}, {}: {} passed, {} failed, {} skipped; {} failed",
                format!("{:.1}s", report.duration_ms / 1000.0),
                human::plural(report.models.len(), "model"),
                human::plural(suites.len(), "suite"),
                count(Verdict::Passed),
                count(Verdict::Failed),
                count(Verdict::Skipped),
                human::plural(failed_models, "model"),
            );
        }
        let failures = report.failures();
        let red = Style::new().fg_color(Some(AnsiColor::Red.into())).bold();
        for (model, suite, check) in failures.iter().take(LISTED_FAILURES) {
            let _ = writeln!(
                out,
                "        {} {} {}  {} · {}: {}",
                self.paint("FAIL", red),
                model.name,
                model.version,
                suite.suite,
                check.name,
                human::clip(&check.message, 160)
            );
        }
        if failures.len() > LISTED_FAILURES {
            let _ = writeln!(
                out,
                "        and {} more failures in the reports",
                failures.len() - LISTED_FAILURES
            );
        }
        if let Some(aborted) = &report.aborted {
            let _ = writeln!(out, "     {} {}", self.paint("Aborted", red), aborted.error);
        }
        if let Some((first, rest)) = files.split_first() {
            let _ = writeln!(out, "     Reports {}", first.display());
            for file in rest {
                let _ = writeln!(out, "             {}", file.display());
            }
        }
        let (word, colour) = match (report.verdict, &report.aborted) {
            (_, Some(_)) => ("ABORTED", AnsiColor::Red),
            (Verdict::Failed, None) => ("FAILED", AnsiColor::Red),
            (_, None) => ("PASSED", AnsiColor::Green),
        };
        let style = Style::new().fg_color(Some(colour.into())).bold();
        let _ = writeln!(out, "     Release {}", self.paint(word, style));
        out
    }
}

/// Colour on a terminal, unless `NO_COLOR` is set.
fn colour() -> bool {
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::stderr().is_terminal() && !no_colour
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Check, SuiteReport};

    fn plain() -> Terminal {
        Terminal {
            bar: None,
            colour: false,
            done: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
        }
    }

    #[test]
    fn a_line_per_suite_and_a_summary_that_ends_with_the_verdict() {
        let mut suite = SuiteReport::new(
            "parity",
            vec![Check::new(
                "parity (batch)",
                false,
                "406 of 500 within tolerance",
            )],
        );
        suite.duration_ms = 123.0;
        let line = plain().line(12, 48, "eta-madrid", 2, &suite);
        assert_eq!(
            line.lines().next(),
            Some("[12/48] FAIL  eta-madrid 2             parity         0.123s")
        );
        assert!(
            line.ends_with("parity (batch): 406 of 500 within tolerance"),
            "{line}"
        );
        assert!(!line.contains('\x1b'), "no colour when it is off: {line:?}");

        let mut report = Report::committed_baseline();
        let summary = plain().summary(&report, &[PathBuf::from("out/report.html")]);
        assert!(summary.contains("Reports out/report.html"), "{summary}");
        assert!(summary.trim_end().ends_with("Release PASSED"), "{summary}");
        report.models[0].suites[0] = suite;
        report.verdict = Verdict::Failed;
        let summary = plain().summary(&report, &[]);
        assert!(
            summary.contains(&format!(
                "FAIL {} {}  parity · parity (batch)",
                report.models[0].name, report.models[0].version
            )),
            "{summary}"
        );
        assert!(summary.trim_end().ends_with("Release FAILED"), "{summary}");
    }
}
