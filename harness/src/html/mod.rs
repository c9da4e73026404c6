//! `report.html`: one self-contained page for a release manager, from a
//! `maud` template. First screen: the verdict, what was verified against
//! what, and every failure with its figure and limit. Then what changed
//! since the last release, the verdicts (failed models first, a large fleet
//! folded), the skips, and each model's suites with their charts and worst
//! rows. No script and no external asset.

mod charts;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::diff::changes;
use crate::figures::{Compared, Figure, key_figures};
use crate::human;
use crate::report::{ModelReport, Report, SuiteReport, Verdict};
use crate::suites::Suite;
use crate::suites::descriptor::Chart;

const STYLE: &str = include_str!("report.css");

/// Beyond this many models, the passing ones fold.
const UNFOLDED_MODELS: usize = 10;
/// A figure this much worse than the baseline's, relative, is marked worse.
const WORSE: f64 = 0.05;
/// Beyond this many key figures, the ones neither failed nor worse fold.
const UNFOLDED_FIGURES: usize = 20;

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

/// What changed since the last release, for the models verified: verdicts
/// and versions that changed, then the key figures against the baseline's
/// and the limit, worst first.
fn changed(report: &Report, baseline: Option<&Report>) -> Markup {
    let figures = key_figures(report, baseline);
    let verdicts: Vec<_> = baseline
        .map(|old| changes(old, report))
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.what == "version" || c.what.ends_with(" verdict") || c.what == "model")
        .filter(|c| report.model(&c.model).is_some())
        .collect();
    let folds = figures.len() > UNFOLDED_FIGURES;
    let (shown, folded): (Vec<&Figure<'_>>, Vec<&Figure<'_>>) = figures
        .iter()
        .partition(|f| !folds || f.verdict == Verdict::Failed || worse(f));
    html! {
        section #changes {
            h2 {
                @if baseline.is_some() { "What changed since the last release" }
                @else { "Key figures" }
            }
            @if baseline.is_none() {
                p { "No baseline report was given (" code { "--baseline" } "): the figures \
                    stand against their limits only." }
            }
            @if !verdicts.is_empty() {
                ul.verdict-changes {
                    @for c in &verdicts {
                        li class=(if c.worse { "failed" } else { "" }) {
                            strong { (c.model) } " " (c.what) ": " (c.before) " → " (c.after)
                        }
                    }
                }
            }
            @if !shown.is_empty() { (figure_table(&shown, baseline.is_some())) }
            @if !folded.is_empty() {
                details {
                    summary { (folded.len()) " more figures, none failed or more than 5% worse" }
                    (figure_table(&folded, baseline.is_some()))
                }
            }
        }
    }
}

/// In the change column of a figure measured otherwise than the last
/// release's: no change, and why.
fn unalike(figure: &Figure<'_>) -> String {
    match &figure.compared {
        Some(Compared::Context { .. }) => "not alike".to_owned(),
        Some(Compared::Paired { judged: false, .. }) => "inconclusive".to_owned(),
        _ => String::new(),
    }
}

/// Worse than the baseline's by more than [`WORSE`].
fn worse(figure: &Figure<'_>) -> bool {
    figure.worse_by().is_some_and(|w| w > WORSE)
}

fn figure_table(figures: &[&Figure<'_>], with_baseline: bool) -> Markup {
    html! {
        div.scroll {
            table.figures {
                thead { tr {
                    th { "model" } th { "figure" }
                    @if with_baseline { th { "baseline" } }
                    th { "now" }
                    @if with_baseline { th { "change" } }
                    th { "limit" } th { "verdict" }
                } }
                tbody {
                    @for f in figures {
                        tr class=(f.verdict.as_str()) {
                            td {
                                a href={ "#" (anchor(f.model, Some(f.suite))) } { (f.model.name) }
                            }
                            td { (f.label) }
                            @if with_baseline {
                                td.num { (f.baseline_text().unwrap_or_default()) }
                            }
                            td.num { (f.show(f.now)) }
                            @if with_baseline {
                                td.num class=(if worse(f) { "worse" } else { "" }) {
                                    (f.delta().unwrap_or_else(|| unalike(f)))
                                }
                            }
                            td.num { (f.limit_text().unwrap_or_default()) }
                            td { (f.verdict.as_str()) }
                        }
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

/// One model's suites, the failed ones open, with their figures, charts
/// and worst rows.
fn model_section(model: &ModelReport, baseline: Option<&Report>) -> Markup {
    let before = baseline.and_then(|b| b.model(&model.name));
    html! {
        section.model id=(anchor(model, None)) {
            h2 {
                (model.name) " version " (model.version) ": "
                span class=(model.verdict.as_str()) { (model.verdict.as_str()) }
            }
            @for suite in &model.suites {
                details id=(anchor(model, Some(&suite.suite)))
                    open[suite.verdict == Verdict::Failed] {
                    summary class=(suite.verdict.as_str()) {
                        (suite.suite) ": " (suite.verdict.as_str())
                        " (" (human::ms(suite.duration_ms)) ")"
                    }
                    div.scroll { table.checks {
                        @for c in &suite.checks {
                            tr class=(c.verdict.as_str()) { td { (c.name) } td { (c.message) } }
                        }
                    } }
                    (figures(suite, before.and_then(|b| b.suite(&suite.suite))))
                    @if let Some(chart) = charts::of(suite) { (chart) }
                    (worst_rows(suite))
                }
            }
        }
    }
}

/// The suite's figures in their units, with their limits, and a chart of
/// each limited figure against its limit and the baseline's.
fn figures(suite: &SuiteReport, before: Option<&SuiteReport>) -> Markup {
    if suite.metrics.is_empty() {
        return html! {};
    }
    html! {
        dl.figures {
            @for (name, value) in &suite.metrics {
                dt { (name) }
                dd {
                    (human::metric(name, *value))
                    @if let Some(limit) = suite.limits.get(name) {
                        span.limit {
                            " (" (limit.label()) " " (human::metric(name, limit.value())) ")"
                        }
                    }
                }
            }
        }
        @for (name, limit) in &suite.limits {
            // A chart that draws the limits (latency's histogram) needs no bar.
            @if let (false, Some(value)) = (charted_limits(suite), suite.metrics.get(name)) {
                (charts::against_limit(
                    &format!("{} {name}: this release against its limit", suite.suite),
                    *value,
                    before.and_then(|b| b.metrics.get(name).copied()),
                    Some(*limit),
                    &|v| human::metric(name, v),
                ))
            }
        }
    }
}

/// Whether the suite's chart draws its limits, which then get no bar.
fn charted_limits(suite: &SuiteReport) -> bool {
    Suite::named(&suite.suite)
        .and_then(|s| s.descriptor().chart)
        .is_some_and(Chart::draws_limits)
}

/// Parity's worst rows: output, served and expected, the inputs, and the
/// curl that sends the row again.
fn worst_rows(suite: &SuiteReport) -> Markup {
    let rows: Vec<&serde_json::Value> = ["batch_worst_rows", "single_worst_rows"]
        .iter()
        .filter_map(|key| suite.details.get(*key)?.as_array())
        .flatten()
        .collect();
    if rows.is_empty() {
        return html! {};
    }
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), human::number),
        other => other.to_string(),
    };
    html! {
        h3 { "Worst rows" }
        @for row in rows {
            div.row {
                p {
                    // Served and expected whole: the difference may be in the
                    // fifth digit.
                    strong { "row " code { (text(&row["id"])) } } ": "
                    code { (text(&row["output"])) } " served " (row["served"])
                    ", expected " (row["expected"])
                }
                @if let Some(inputs) = row["inputs"].as_object() {
                    div.scroll { table.inputs {
                        tr { @for name in inputs.keys() { th { (name) } } }
                        tr { @for value in inputs.values() { td { (text(value)) } } }
                    } }
                }
                @if let Some(curl) = row["curl"].as_str() {
                    pre.curl { code { (curl) } }
                }
            }
        }
    }
}
