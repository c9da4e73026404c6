//! Each model's section: its suites, the failed ones open, with their
//! figures, charts and worst rows.

use maud::{Markup, html};

use super::{anchor, charts};
use crate::human;
use crate::report::{ModelReport, Report, SuiteReport, Verdict};
use crate::suites::Suite;
use crate::suites::descriptor::Chart;

/// One model's suites, the failed ones open, with their figures, charts
/// and worst rows.
pub(super) fn model_section(model: &ModelReport, baseline: Option<&Report>) -> Markup {
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
