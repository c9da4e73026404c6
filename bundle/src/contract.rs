//! The `[contract]` of a manifest: what a release of the model must show.
//!
//! Every key is optional; a missing one means its check is skipped, and
//! reports say so (skipped is not passed).

use serde::{Deserialize, Serialize};

/// All budgets of one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Contract {
    pub parity: Option<Tolerance>,
    pub latency: Option<LatencyBudget>,
    pub size: Option<SizeBudget>,
    /// Hold-out quality budgets, one table or a list of them (a classifier
    /// bounds accuracy and log loss, say); the first is the model's
    /// primary metric, which the server's live error follows.
    pub quality: Vec<QualityBudget>,
    /// The fast fallback's own quality budget on the hold-out (a Preflight extension).
    pub fallback: Option<QualityBudget>,
    pub monotonic: Vec<Monotonic>,
    /// The changes against the last release that break its clients and that
    /// this release means, each named as the harness's `compat` suite names
    /// it (`vehicle: category 'moto' removed`): a Preflight extension.
    pub breaking: Vec<String>,
}

/// How far a served value may be from the expected one:
/// `|served - expected| <= abs + rel * |expected|`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    #[serde(default)]
    pub abs: f64,
    #[serde(default)]
    pub rel: f64,
}

impl Tolerance {
    pub fn new(abs: f64, rel: f64) -> Self {
        Self { abs, rel }
    }

    /// The largest difference allowed around `expected`.
    pub fn allowance(&self, expected: f64) -> f64 {
        self.abs + self.rel * expected.abs()
    }

    /// Whether `served` is close enough to `expected`. NaN is never close.
    pub fn accepts(&self, served: f64, expected: f64) -> bool {
        (served - expected).abs() <= self.allowance(expected)
    }
}

/// The open-loop latency test: its load and its percentile budgets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LatencyBudget {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub rate_per_s: f64,
    pub requests: u64,
    /// How much p99 may grow against the last release (0.2 = 20%), judged
    /// statistically on the two versions measured in the same run.
    #[serde(default)]
    pub max_p99_regression: Option<f64>,
    /// How much p50 may grow against the last release; `max_p99_regression`
    /// when absent (a Preflight extension).
    #[serde(default)]
    pub max_p50_regression: Option<f64>,
    /// The share of latency requests the fallback may answer (0 when absent):
    /// a main model that meets its deadline only because the fallback answers
    /// for it is not fast.
    #[serde(default)]
    pub max_fallback_rate: Option<f64>,
}

impl LatencyBudget {
    /// `max_p99_regression` when given, else 20%.
    pub fn p99_regression(&self) -> f64 {
        self.max_p99_regression.unwrap_or(0.2)
    }

    /// `max_p50_regression` when given, else the p99 limit.
    pub fn p50_regression(&self) -> f64 {
        self.max_p50_regression
            .unwrap_or_else(|| self.p99_regression())
    }

    /// `max_fallback_rate` when given, else 0.
    pub fn fallback_rate(&self) -> f64 {
        self.max_fallback_rate.unwrap_or(0.0)
    }
}

/// The size budget: the artifact on disk and what the model costs the
/// endpoint in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SizeBudget {
    #[serde(default)]
    pub max_model_bytes: Option<u64>,
    /// What the model may cost the endpoint in memory once it has served its
    /// samples and batches.
    #[serde(default)]
    pub max_memory_bytes: Option<u64>,
    /// How much the artifact, and the memory, may grow against the baseline
    /// release (0.25 = 25%).
    #[serde(default)]
    pub max_growth: Option<f64>,
}

impl Contract {
    /// The first quality budget: the metric the live error follows.
    pub fn primary_quality(&self) -> Option<&QualityBudget> {
        self.quality.first()
    }
}

/// A quality budget on the hold-out: an absolute bound and a regression limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct QualityBudget {
    pub metric: Metric,
    /// Upper bound, for metrics where lower is better.
    #[serde(default)]
    pub max: Option<f64>,
    /// Lower bound, for metrics where higher is better.
    #[serde(default)]
    pub min: Option<f64>,
    /// How much worse than the baseline the metric may get (0.05 = 5%).
    #[serde(default)]
    pub max_regression: Option<f64>,
}

/// A hold-out quality metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Metric {
    /// Mean absolute error.
    Mae,
    /// Root mean squared error.
    Rmse,
    /// Mean absolute percentage error, in percent.
    Mape,
    /// Share of correct labels.
    Accuracy,
    /// Mean negative log-likelihood of the true label.
    LogLoss,
    /// Area under the ROC curve: of `classes[1]` for a binary classifier,
    /// the macro average of one-vs-rest for more classes.
    RocAuc,
    /// Mean squared distance between the probabilities and the one-hot label.
    Brier,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Mae => "mae",
            Metric::Rmse => "rmse",
            Metric::Mape => "mape",
            Metric::Accuracy => "accuracy",
            Metric::LogLoss => "log_loss",
            Metric::RocAuc => "roc_auc",
            Metric::Brier => "brier",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::Accuracy | Metric::RocAuc)
    }

    pub fn for_regression(self) -> bool {
        matches!(self, Metric::Mae | Metric::Rmse | Metric::Mape)
    }
}

/// An input the output must move with in one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monotonic {
    pub input: String,
    pub direction: Direction,
    /// A classifier's class whose probability the constraint holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<crate::Class>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Increasing,
    Decreasing,
}
