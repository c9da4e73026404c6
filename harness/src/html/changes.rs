//! "What changed since the last release": verdicts and versions that
//! changed, then the key figures against the baseline's and the limit.

use maud::{Markup, html};

use super::anchor;
use crate::diff::changes;
use crate::figures::{Compared, Figure, key_figures};
use crate::report::{Report, Verdict};

/// A figure this much worse than the baseline's, relative, is marked worse.
const WORSE: f64 = 0.05;
/// Beyond this many key figures, the ones neither failed nor worse fold.
const UNFOLDED_FIGURES: usize = 20;

/// What changed since the last release, for the models verified: verdicts
/// and versions that changed, then the key figures against the baseline's
/// and the limit, worst first.
pub(super) fn changed(report: &Report, baseline: Option<&Report>) -> Markup {
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
