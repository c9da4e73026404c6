//! The charts of report.html as inline SVG: histograms on a log scale with
//! their axes, units and the contract's lines, and a bar per figure against
//! its limit and the baseline. Bars beyond a limit are red.

use maud::{Markup, html};
use serde_json::Value;

use crate::human;
use crate::report::{Limit, SuiteReport};
use crate::suites::Suite;
use crate::suites::descriptor::Chart;
use crate::suites::latency::HISTOGRAM_MS;
use crate::suites::parity::TOLERANCE_HISTOGRAM;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 46.0;

/// One bar of a histogram: `[from, to)` in the x axis's unit.
struct Bin {
    from: f64,
    to: f64,
    count: f64,
    bad: bool,
}

/// A histogram with a log-scaled x axis; x values are log10 of the unit.
struct Histogram {
    title: String,
    x_label: &'static str,
    bins: Vec<Bin>,
    /// Vertical lines: (log10 x, label).
    lines: Vec<(f64, String)>,
    /// How an x tick reads: log10 x → label.
    tick: fn(f64) -> String,
}

/// The suite's charts: latency against its budgets, parity error against
/// the tolerance.
pub(super) fn of(suite: &SuiteReport) -> Option<Markup> {
    match Suite::named(&suite.suite)?.descriptor().chart? {
        Chart::Latency => latency(suite).map(|h| h.render()),
        Chart::Parity => parity(suite).map(|h| h.render()),
    }
}

fn latency(suite: &SuiteReport) -> Option<Histogram> {
    let pairs = pairs(&suite.details[HISTOGRAM_MS]);
    let budget = |key: &str| suite.limits.get(key).map(|l| l.value());
    let p99 = budget("p99_ms");
    let mut lower = pairs.first()?.0 / 1.5;
    let mut bins = Vec::new();
    for (upper, count) in pairs {
        bins.push(Bin {
            from: lower.log10(),
            to: upper.log10(),
            count,
            bad: p99.is_some_and(|b| lower >= b),
        });
        lower = upper;
    }
    let lines = [("p50", budget("p50_ms")), ("p99", p99)]
        .into_iter()
        .filter_map(|(name, ms)| {
            let ms = ms?;
            Some((ms.log10(), format!("{name} budget {}", human::ms(ms))))
        })
        .collect();
    Some(Histogram {
        title: "Latency: requests per bin".to_owned(),
        x_label: "latency, ms (log scale)",
        bins,
        lines,
        tick: |x| human::number(10f64.powf(x)),
    })
}

fn parity(suite: &SuiteReport) -> Option<Histogram> {
    let pairs = pairs(&suite.details[TOLERANCE_HISTOGRAM]);
    let bins: Vec<Bin> = pairs
        .iter()
        .map(|&(decade, count)| Bin {
            from: decade,
            to: decade + 1.0,
            count,
            bad: decade >= 0.0,
        })
        .collect();
    if bins.is_empty() {
        return None;
    }
    Some(Histogram {
        title: "Parity (batch): values per decade of error".to_owned(),
        x_label: "|served − expected| ÷ tolerance (log scale)",
        bins,
        lines: vec![(0.0, "tolerance".to_owned())],
        tick: |x| format!("1e{x:.0}"),
    })
}

impl Histogram {
    fn render(&self) -> Markup {
        let line_xs = self.lines.iter().map(|l| l.0);
        let from = self.bins.iter().map(|b| b.from).chain(line_xs.clone());
        let to = self.bins.iter().map(|b| b.to).chain(line_xs);
        let (min, mut max) = (
            from.fold(f64::INFINITY, f64::min),
            to.fold(f64::NEG_INFINITY, f64::max),
        );
        // Room for a line's label at the right edge.
        max += (max - min).max(1.0) * 0.08;
        let x = |v: f64| LEFT + (v - min) / (max - min).max(f64::EPSILON) * (WIDTH - LEFT - RIGHT);
        let top = self.bins.iter().map(|b| b.count).fold(1.0, f64::max);
        let y = |c: f64| HEIGHT - BOTTOM - c / top * (HEIGHT - TOP - BOTTOM);
        let base = HEIGHT - BOTTOM;
        let ticks = ticks(min, max);
        html! {
            figure {
                figcaption { (self.title) }
                svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
                    aria-label=(self.title) {
                    @for bin in &self.bins {
                        rect class=(if bin.bad { "bar bad" } else { "bar" })
                            x=(fmt(x(bin.from) + 0.5)) y=(fmt(y(bin.count)))
                            width=(fmt((x(bin.to) - x(bin.from) - 1.0).max(1.0)))
                            height=(fmt(base - y(bin.count))) {
                            title {
                                ((self.tick)(bin.from)) "–" ((self.tick)(bin.to)) ": "
                                (human::count(bin.count))
                            }
                        }
                    }
                    g.axis.x {
                        line x1=(LEFT) y1=(base) x2=(WIDTH - RIGHT) y2=(base) {}
                        @for t in &ticks {
                            line x1=(fmt(x(*t))) y1=(base) x2=(fmt(x(*t))) y2=(base + 4.0) {}
                            text x=(fmt(x(*t))) y=(base + 16.0) text-anchor="middle" {
                                ((self.tick)(*t))
                            }
                        }
                        text x=(fmt((LEFT + WIDTH - RIGHT) / 2.0)) y=(HEIGHT - 6.0)
                            text-anchor="middle" { (self.x_label) }
                    }
                    g.axis.y {
                        line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(base) {}
                        @for c in [0.0, top / 2.0, top] {
                            line x1=(LEFT - 4.0) y1=(fmt(y(c))) x2=(LEFT) y2=(fmt(y(c))) {}
                            text x=(LEFT - 7.0) y=(fmt(y(c) + 4.0)) text-anchor="end" {
                                (human::count(c.round()))
                            }
                        }
                        text x="12" y=(fmt((TOP + base) / 2.0)) text-anchor="middle"
                            transform={ "rotate(-90 12 " (fmt((TOP + base) / 2.0)) ")" } {
                            "count"
                        }
                    }
                    @for (i, (at, label)) in self.lines.iter().enumerate() {
                        g.limit {
                            line x1=(fmt(x(*at))) y1=(TOP - 6.0) x2=(fmt(x(*at))) y2=(base) {}
                            text x=(fmt(x(*at) + 3.0)) y=(TOP + 12.0 * i as f64) { (label) }
                        }
                    }
                }
            }
        }
    }
}

/// Whole decades of the domain as x ticks; with fewer than two, the ends.
fn ticks(min: f64, max: f64) -> Vec<f64> {
    let decades: Vec<f64> = ((min.ceil() as i32)..=(max.floor() as i32))
        .map(f64::from)
        .collect();
    if decades.len() >= 2 {
        decades
    } else {
        vec![min, (min + max) / 2.0, max]
    }
}

/// A figure against its limit and the baseline's, as horizontal bars on a
/// linear scale from 0: the limit is a line, a bar beyond it is red.
pub(super) fn against_limit(
    title: &str,
    now: f64,
    baseline: Option<f64>,
    limit: Option<Limit>,
    show: &dyn Fn(f64) -> String,
) -> Markup {
    const ROW: f64 = 26.0;
    let rows: Vec<(&str, f64)> = std::iter::once(("this release", now))
        .chain(baseline.map(|b| ("baseline", b)))
        .collect();
    let height = TOP + ROW * rows.len() as f64 + 30.0;
    let top = rows
        .iter()
        .map(|r| r.1)
        .chain(limit.map(Limit::value))
        .fold(f64::MIN_POSITIVE, f64::max)
        * 1.15;
    let left = 96.0;
    let x = |v: f64| left + v / top * (WIDTH - left - RIGHT - 60.0);
    let base = TOP + ROW * rows.len() as f64;
    html! {
        figure {
            figcaption { (title) }
            svg.chart viewBox={ "0 0 " (WIDTH) " " (fmt(height)) } role="img" aria-label=(title) {
                @for (i, (name, value)) in rows.iter().enumerate() {
                    @let bad = limit.is_some_and(|l| !l.holds(*value));
                    @let row_y = TOP + ROW * i as f64;
                    text x=(left - 6.0) y=(fmt(row_y + 15.0)) text-anchor="end" { (name) }
                    rect class=(if bad { "bar bad" } else { "bar" }) x=(left) y=(fmt(row_y + 3.0))
                        width=(fmt((x(*value) - left).max(1.0))) height=(ROW - 8.0) {}
                    text x=(fmt(x(*value) + 4.0)) y=(fmt(row_y + 15.0)) { (show(*value)) }
                }
                g.axis.x {
                    line x1=(left) y1=(fmt(base)) x2=(fmt(x(top))) y2=(fmt(base)) {}
                    line x1=(left) y1=(TOP) x2=(left) y2=(fmt(base)) {}
                    text x=(left) y=(fmt(base + 16.0)) text-anchor="middle" { "0" }
                    text x=(fmt(x(top))) y=(fmt(base + 16.0)) text-anchor="end" { (show(top)) }
                }
                @if let Some(limit) = limit {
                    g.limit {
                        line x1=(fmt(x(limit.value()))) y1=(TOP - 6.0) x2=(fmt(x(limit.value())))
                            y2=(fmt(base)) {}
                        text x=(fmt(x(limit.value()) + 3.0)) y=(TOP - 8.0) {
                            (limit.label()) " " (show(limit.value()))
                        }
                    }
                }
            }
        }
    }
}

/// SVG coordinates with one decimal.
fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

/// `[[x, count], ...]` as pairs.
fn pairs(value: &Value) -> Vec<(f64, f64)> {
    value.as_array().map_or_else(Vec::new, |items| {
        items
            .iter()
            .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
            .collect()
    })
}
