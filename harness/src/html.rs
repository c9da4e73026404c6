//! `report.html`: one self-contained page for a release manager. The verdict
//! matrix, a drill-down per model, a latency histogram and a parity-error
//! distribution drawn as inline SVG, and what changed against the baseline.

use std::fmt::Write as _;

use serde_json::Value;

use crate::diff::{changes, render};
use crate::report::{ModelReport, Report, SuiteReport, Verdict};
use crate::suites::latency::HISTOGRAM_MS;

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;\
color:#222}\
table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
.passed{background:#e3f6e3}.failed{background:#fbe0e0}.skipped{background:#f0f0f0;color:#666}\
h1 .passed,h1 .failed{padding:0 .3em;border-radius:4px}details{margin:.4em 0}\
summary{cursor:pointer;font-weight:600}\
svg{background:#fafafa;border:1px solid #ddd}code,pre{font:12px ui-monospace,monospace}\
pre{white-space:pre-wrap}";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) fn render_html(report: &Report, baseline: Option<&Report>) -> String {
    let mut h = String::new();
    header(&mut h, report);
    verdicts(&mut h, report);
    skipped(&mut h, report);
    h.push_str("<h2>Against the baseline</h2>");
    match baseline {
        None => h.push_str(
            "<p>No baseline report was given: comparisons with the last release were skipped.</p>",
        ),
        Some(old) => {
            let _ = write!(h, "<pre>{}</pre>", escape(&render(&changes(old, report))));
        }
    }
    for m in &report.models {
        model(&mut h, m);
    }
    h.push_str("</body></html>\n");
    h
}

fn header(h: &mut String, report: &Report) {
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Preflight: \
            {}</title><style>{STYLE}</style></head><body>",
        report.verdict.as_str()
    );
    let _ = write!(
        h,
        "<h1>Preflight release report: <span class=\"{v}\">{v}</span></h1><p>{} models from \
            <code>{}</code> against <code>{}</code>, in {:.1} s (preflight {}).</p>",
        report.models.len(),
        escape(&report.repository),
        escape(&report.target),
        report.duration_ms / 1000.0,
        escape(&report.preflight_version),
        v = report.verdict.as_str()
    );
}

/// The matrix of models and suites.
fn verdicts(h: &mut String, report: &Report) {
    let suites = report.suite_names();
    h.push_str("<h2>Verdicts</h2><table><tr><th>model</th><th>version</th>");
    for s in &suites {
        let _ = write!(h, "<th>{s}</th>");
    }
    h.push_str("</tr>");
    for m in &report.models {
        let _ = write!(
            h,
            "<tr><td><a href=\"#{0}\">{0}</a></td><td>{1}</td>",
            escape(&m.name),
            m.version
        );
        for s in &suites {
            match m.suite(s) {
                Some(r) => {
                    let _ = write!(h, "<td class=\"{0}\">{0}</td>", r.verdict.as_str());
                }
                None => h.push_str("<td></td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

/// Every skipped check, grouped, and every warning.
fn skipped(h: &mut String, report: &Report) {
    let groups = report.skip_groups();
    if !groups.is_empty() {
        let _ = write!(
            h,
            "<h2 id=\"skipped\">Skipped</h2><p>Not judged, and why; {}.</p><table>\
                <tr><th>suite</th><th>check</th><th>why</th><th>models</th><th>reason</th></tr>",
            escape(&report.policy_line())
        );
        for g in &groups {
            let _ = write!(
                h,
                "<tr class=\"skipped\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                    <td>{}</td></tr>",
                escape(&g.suite),
                escape(&g.check),
                g.kind,
                escape(&g.models_line(10)),
                escape(&g.example)
            );
        }
        h.push_str("</table>");
    }
    let warnings: Vec<String> = report
        .models
        .iter()
        .flat_map(|m| m.warnings.iter())
        .map(|w| format!("<li>{}</li>", escape(w)))
        .collect();
    if !warnings.is_empty() {
        let _ = write!(
            h,
            "<h2 id=\"warnings\">Warnings</h2><ul>{}</ul>",
            warnings.concat()
        );
    }
}

/// One model's suites, the failed ones open.
fn model(h: &mut String, m: &ModelReport) {
    let _ = write!(
        h,
        "<h2 id=\"{0}\">{0} version {1}: <span class=\"{2}\">{2}</span></h2>",
        escape(&m.name),
        m.version,
        m.verdict.as_str()
    );
    for s in &m.suites {
        let open = if s.verdict == Verdict::Failed {
            " open"
        } else {
            ""
        };
        let _ = write!(
            h,
            "<details{open}><summary class=\"{0}\">{1}: {0} ({2:.1} s)</summary><table>",
            s.verdict.as_str(),
            s.suite,
            s.duration_ms / 1000.0
        );
        for c in &s.checks {
            let _ = write!(
                h,
                "<tr class=\"{}\"><td>{}</td><td>{}</td></tr>",
                c.verdict.as_str(),
                escape(&c.name),
                escape(&c.message)
            );
        }
        h.push_str("</table>");
        if !s.metrics.is_empty() {
            let figures: Vec<String> = s
                .metrics
                .iter()
                .map(|(k, v)| format!("{k} = {v:.4}"))
                .collect();
            let _ = write!(h, "<p><code>{}</code></p>", escape(&figures.join(", ")));
        }
        chart(h, s);
        h.push_str("</details>");
    }
}

/// The suite's histogram, where it has one, as SVG bars.
fn chart(h: &mut String, suite: &SuiteReport) {
    let (title, bins) = match suite.suite.as_str() {
        "latency" => (
            "Latency: requests per bin, by the bin's upper bound in ms",
            pairs(&suite.details[HISTOGRAM_MS], |x| format!("{x:.1}")),
        ),
        "parity" => (
            "Parity error: rows per decade of |served − expected| (batch mode)",
            pairs(&suite.details["error_histogram"], |x| format!("1e{x:.0}")),
        ),
        _ => return,
    };
    if bins.is_empty() {
        return;
    }
    let max = bins.iter().map(|(_, c)| *c).fold(1.0, f64::max);
    let (step, bar, height) = (30.0, 26.0, 160.0);
    let width = 40.0 + step * bins.len() as f64;
    let _ = write!(
        h,
        "<p>{title}</p><svg width=\"{width}\" height=\"{}\" role=\"img\">",
        height + 30.0
    );
    for (i, (label, count)) in bins.iter().enumerate() {
        let bar_height = count / max * height;
        let left = 20.0 + step * i as f64;
        let _ = write!(
            h,
            "<rect x=\"{left}\" y=\"{}\" width=\"{bar}\" height=\"{bar_height}\" \
                fill=\"#4a7ebb\"><title>{label}: {count}</title></rect><text x=\"{}\" y=\"{}\" \
                font-size=\"9\" text-anchor=\"middle\">{}</text>",
            height - bar_height + 5.0,
            left + bar / 2.0,
            height + 20.0,
            escape(label)
        );
    }
    h.push_str("</svg>");
}

/// `[[x, count], ...]` as (label, count) pairs.
fn pairs(value: &Value, label: fn(f64) -> String) -> Vec<(String, f64)> {
    value.as_array().map_or_else(Vec::new, |items| {
        items
            .iter()
            .filter_map(|p| Some((label(p.get(0)?.as_f64()?), p.get(1)?.as_f64()?)))
            .collect()
    })
}
