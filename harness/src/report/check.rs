//! What a report is made of: a suite's checks, each with its verdict, the
//! kind of a skip, and the limit a figure was held to.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Passed, failed, or not run (and why): skipped is not passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Passed,
    Failed,
    Skipped,
}

impl Verdict {
    /// The verdict of a group: failed if any failed, passed if any passed.
    pub fn of(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        let mut any_passed = false;
        for v in verdicts {
            match v {
                Verdict::Failed => return Verdict::Failed,
                Verdict::Passed => any_passed = true,
                Verdict::Skipped => {}
            }
        }
        if any_passed {
            Verdict::Passed
        } else {
            Verdict::Skipped
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Skipped => "skipped",
        }
    }
}

/// Why a check was skipped: what the gate's policy (`--require`) may forbid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// The bundle or its contract lacks what the check needs.
    Missing,
    /// There is nothing to check: the model has no nullable input, say.
    NotApplicable,
    /// There is no last release to compare with: no baseline report, or it
    /// has no figure for this check.
    NoBaseline,
    /// The baseline report does not have this model: a new model.
    NewModel,
    /// The last release was not served in this run, so nothing was measured
    /// beside the candidate: a gap in the run, not in the figures.
    NotCompared,
    /// The endpoint cannot tell (a server this run did not start).
    Endpoint,
    /// Measured, but not decided: the interval straddles the limit, or the
    /// figure cannot be judged reliably against another run's.
    Inconclusive,
    /// Not run because an earlier check of the model failed.
    NotRun,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Missing => "missing",
            Skip::NotApplicable => "not applicable",
            Skip::NoBaseline => "no baseline",
            Skip::NewModel => "new model",
            Skip::NotCompared => "not compared",
            Skip::Endpoint => "endpoint cannot tell",
            Skip::Inconclusive => "inconclusive",
            Skip::NotRun => "not run",
        }
    }
}

/// One check of a suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    /// Why it passed, failed or was skipped, in one sentence.
    pub message: String,
    /// Why a skipped check was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<Skip>,
}

impl Check {
    pub fn new(name: &str, passed: bool, message: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            verdict: if passed {
                Verdict::Passed
            } else {
                Verdict::Failed
            },
            message: message.into(),
            skip: None,
        }
    }

    pub fn skipped(name: &str, skip: Skip, why: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            verdict: Verdict::Skipped,
            message: why.into(),
            skip: Some(skip),
        }
    }
}

/// One suite's result for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SuiteReport {
    pub suite: String,
    pub verdict: Verdict,
    pub checks: Vec<Check>,
    /// Figures other reports compare against (`p99_ms`, `mae`, `model_bytes`, ...).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// The contract's bound on a figure of `metrics`, by the same name:
    /// what the reports draw as a budget or tolerance line.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Limit>,
    /// Suite-specific evidence: worst rows, histograms.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    pub duration_ms: f64,
}

impl SuiteReport {
    pub fn new(suite: &str, checks: Vec<Check>) -> Self {
        let verdict = Verdict::of(checks.iter().map(|c| c.verdict));
        Self {
            suite: suite.to_owned(),
            verdict,
            checks,
            metrics: BTreeMap::new(),
            limits: BTreeMap::new(),
            details: serde_json::Value::Null,
            duration_ms: 0.0,
        }
    }

    /// The messages of the failed checks, joined: what a reader needs first.
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| c.verdict == Verdict::Failed)
            .map(|c| format!("{}: {}", c.name, c.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The contract's bound on a figure: at most `max`, or at least `min`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    Max(f64),
    Min(f64),
}

impl Limit {
    pub fn value(self) -> f64 {
        match self {
            Limit::Max(v) | Limit::Min(v) => v,
        }
    }

    /// Whether `figure` keeps within the bound.
    pub fn holds(self, figure: f64) -> bool {
        match self {
            Limit::Max(max) => figure <= max,
            Limit::Min(min) => figure >= min,
        }
    }

    /// `max` or `min`, as the reports label it.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Max(_) => "max",
            Limit::Min(_) => "min",
        }
    }
}
