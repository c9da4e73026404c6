//! What a suite is, for everything that is not the suite itself: when it
//! runs, what the run prepares for it, which of its figures the reports
//! lead with, and how report.html draws it. Each suite's module declares
//! its own (`DESCRIPTOR`); `verify`, the key figures and the charts read
//! it, and none of them names a suite.

use super::Phase;

/// One suite, as the rest of the harness knows it.
#[derive(Debug)]
pub struct Descriptor {
    /// When the suite runs in a verification.
    pub phase: Phase,
    /// What the run prepares for the suite beyond the bundle and the
    /// endpoint.
    pub needs: &'static [Need],
    /// The checks that carry the suite's purpose: the gate counts the suite
    /// as judged only when one of them was (`--require`). Empty: any check.
    pub purpose: &'static [&'static str],
    /// The figures "what changed since the last release" shows.
    pub key_figures: KeyFigures,
    /// How report.html draws the suite, besides its checks.
    pub chart: Option<Chart>,
}

impl Descriptor {
    /// A suite of the functional phase that needs nothing prepared, counts
    /// any check as its purpose, and has neither key figures nor a chart:
    /// what a suite's own descriptor starts from (`..Descriptor::FUNCTIONAL`).
    pub const FUNCTIONAL: Descriptor = Descriptor {
        phase: Phase::Functional,
        needs: &[],
        purpose: &[],
        key_figures: KeyFigures::None,
        chart: None,
    };
}

/// What a suite needs the run to prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The ONNX file run in-process on the samples (`artifact.rs`), to
    /// tell where a divergence arises.
    Artifact,
    /// The last release: its bundle (`ModelUnderTest::last_release`), and
    /// for a suite of the fleet phase its endpoint, timed beside.
    LastRelease,
}

/// A suite's key figures.
#[derive(Debug)]
pub enum KeyFigures {
    None,
    /// These metrics, each with what judges it.
    Listed(&'static [KeyFigure]),
    /// Every metric the contract bounds, under its own name, judged by its
    /// own check and `against the baseline`; compared alike.
    Bounded,
}

/// A metric the reports lead with.
#[derive(Debug)]
pub struct KeyFigure {
    /// The name in the suite's metrics: `p99_ms`.
    pub metric: &'static str,
    /// As the reports label it: `p99`.
    pub label: &'static str,
    /// The checks that judge it.
    pub checks: [&'static str; 2],
    /// How it is compared with the last release's.
    pub compared: Comparison,
}

/// How a figure is compared with the last release's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Timed beside the last release in this run, request by request: the
    /// metric `<label>_ratio` is the paired ratio. A baseline report's
    /// figure, from another run, is context, never a change.
    Paired,
    /// The baseline report's figure, alike where it was measured on the
    /// same kind of target, context elsewhere: what a target holds.
    OnTarget,
    /// The baseline report's figure, alike wherever it was measured.
    Alike,
}

/// A chart of report.html.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chart {
    /// The latency histogram, with the budgets as lines on it.
    Latency,
    /// Each sample's error against the parity tolerance.
    Parity,
}

impl Chart {
    /// Whether the chart draws the suite's limits, which then get no bar
    /// of their own.
    pub fn draws_limits(self) -> bool {
        self == Chart::Latency
    }
}
