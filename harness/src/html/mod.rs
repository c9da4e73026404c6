//! `report.html`: one self-contained page for a release manager, from a
//! `maud` template. First screen: the verdict, what was verified against
//! what, and every failure with its figure and limit. Then what changed
//! since the last release, the verdicts (failed models first, a large fleet
//! folded), the skips, and each model's suites with their charts and worst
//! rows. No script and no external asset.

mod changes;
mod charts;
mod model;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use self::changes::changed;
use self::model::model_section;
use crate::human;
use crate::report::{ModelReport, Report, Verdict};

const STYLE: &str = include_str!("report.css");

/// Beyond this many models, the passing ones fold.
const UNFOLDED_MODELS: usize = 10;

pub(crate) fn render_html(report: &Report, baseline: Option<&Report>) -> String {
    let title = format!(
        "Preflight: {} ({})",
        report.verdict.as_str(),
        human::plural(report.models.len(), "model")
    );
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                (header(report, baseline))
                (failures(report))
                (changed(report, baseline))
                (verdicts(report))
                (skipped(report))
                @for model in &report.models {
                    (model_section(model, baseline))
                }
            }
        }
    }
    .into_string()
}

/// The anchor of a model's section, or of one of its suites.
fn anchor(model: &ModelReport, suite: Option<&str>) -> String {
    let id: String = format!("m-{}-{}", model.name, suite.unwrap_or(""))
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    id.trim_end_matches('-').to_owned()
}

fn header(report: &Report, baseline: Option<&Report>) -> Markup {
    let verdict = report.verdict.as_str();
    let failed = report
        .models
        .iter()
        .filter(|m| m.verdict == Verdict::Failed)
        .count();
    html! {
        header #verdict class=(verdict) {
            h1 { "Release " (verdict.to_uppercase()) }
            p.lead {
                (human::plural(report.models.len(), "model")) " verified, "
                (failed) " failed"
                @if let Some(shard) = &report.shard { " (shard " (shard) ")" }
                "."
            }
            dl.meta {
                dt { "Date" } dd { (human::date(&report.started_at)) ", took "
                    (human::ms(report.duration_ms)) }
                dt { "Target" } dd { code { (report.target) } ", over " (report.protocol) }
                dt { "Baseline" } dd #baseline {
                    @match (baseline, &report.baseline) {
                        (Some(b), path) => {
                            code { (path.as_deref().unwrap_or("given")) } ": the release of "
                            (human::date(&b.started_at))
                            @if let Some(commit) = &b.commit {
                                ", commit " code { (short(commit)) }
                            }
                            ", " (human::plural(b.models.len(), "model")) ", "
                            (b.verdict.as_str())
                        }
                        (None, Some(path)) => { code { (path) } " (not readable here)" }
                        (None, None) => {
                            "none given: comparisons with the last release were skipped"
                        }
                    }
                }
                dt { "Commit" } dd {
                    @match &report.commit {
                        Some(commit) => code title=(commit) { (short(commit)) },
                        None => "not in git",
                    }
                }
                dt { "Models" } dd { code { (report.repository) } }
                dt { "Preflight" } dd { (report.preflight_version) }
            }
            @if let Some(aborted) = &report.aborted {
                p #aborted {
                    strong { "The run stopped before a verdict on every model" }
                    " (exit code " (aborted.exit_code) "): " (aborted.error)
                }
            }
        }
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// A failure's message in the box is cut to about this many characters, so
/// that every failure fits the first screen; its suite has it whole.
const FAILURE_CHARS: usize = 110;

/// Every failed check on one line: model, suite, check, and the message,
/// which states the figure against its limit first; each links to its
/// suite, where the message is whole.
fn failures(report: &Report) -> Markup {
    let failures = report.failures();
    if failures.is_empty() {
        return html! {};
    }
    html! {
        section #failures {
            h2 { "Failures (" (failures.len()) ")" }
            ol {
                @for (model, suite, check) in failures {
                    li {
                        a href={ "#" (anchor(model, Some(&suite.suite))) } {
                            strong { (model.name) " " (model.version) }
                            " · " (suite.suite) " · " (check.name)
                        }
                        ": " (human::clip(&check.message, FAILURE_CHARS))
                    }
                }
            }
        }
    }
}

/// The matrix of models and suites: failed models first; in a large fleet
/// the passing ones fold.
fn verdicts(report: &Report) -> Markup {
    let suites = report.suite_names();
    let folds = report.models.len() > UNFOLDED_MODELS;
    let (shown, folded): (Vec<&ModelReport>, Vec<&ModelReport>) = report
        .models
        .iter()
        .partition(|m| !folds || m.verdict == Verdict::Failed);
    let table = |models: &[&ModelReport]| {
        html! {
            div.scroll {
                table.grid {
                    thead { tr {
                        th { "model" } th { "version" }
                        @for s in &suites { th { (s) } }
                    } }
                    tbody {
                        @for m in models {
                            tr {
                                td { a href={ "#" (anchor(m, None)) } { (m.name) } }
                                td.num { (m.version) }
                                @for s in &suites {
                                    @match m.suite(s) {
                                        Some(r) => td class=(r.verdict.as_str()) {
                                            a href={ "#" (anchor(m, Some(s))) } {
                                                (r.verdict.as_str())
                                            }
                                        },
                                        None => td {},
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html! {
        section #verdicts {
            h2 { "Verdicts" }
            @if !shown.is_empty() { (table(&shown)) }
            @if !folded.is_empty() {
                details {
                    summary { (human::plural(folded.len(), "more model")) ", none failed" }
                    (table(&folded))
                }
            }
        }
    }
}

/// Every skipped check, grouped, and every warning.
fn skipped(report: &Report) -> Markup {
    let groups = report.skip_groups();
    let warnings: Vec<(&ModelReport, &String)> = report
        .models
        .iter()
        .flat_map(|m| m.warnings.iter().map(move |w| (m, w)))
        .collect();
    html! {
        @if !groups.is_empty() {
            section #skipped {
                h2 { "Skipped" }
                p { "Not judged, and why; " (report.policy_line()) "." }
                div.scroll { table {
                    thead { tr {
                        th { "suite" } th { "check" } th { "why" } th { "models" } th { "reason" }
                    } }
                    tbody {
                        @for g in &groups {
                            tr.skipped {
                                td { (g.suite) } td { (g.check) } td { (g.kind) }
                                td { (g.models_line(10)) } td { (g.example) }
                            }
                        }
                    }
                } }
            }
        }
        @if !warnings.is_empty() {
            section #warnings {
                h2 { "Warnings" }
                ul { @for (m, w) in &warnings { li { strong { (m.name) } " " (w) } } }
            }
        }
    }
}
