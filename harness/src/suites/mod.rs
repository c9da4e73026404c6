//! The suites, each derived from a bundle's manifest and files with no
//! per-model code. A suite returns checks; the runner turns them into a report.

mod compat;
pub mod descriptor;
mod explain;
mod fallback;
pub(crate) mod latency;
mod memory;
mod nullable;
pub mod observability;
pub(crate) mod parity;
pub(crate) mod plausible;
mod property;
mod quality;
pub(crate) mod rollout;
mod scoring;
mod size;
mod unit;

use std::time::Instant;

use preflight_bundle::{Bundle, Record};

use crate::client::{Client, Unreachable};
use crate::report::{Check, ModelReport, Skip, SuiteReport};
pub use descriptor::{Descriptor, Need};

/// A suite, in the order they run: the one list of suites. The command
/// line (`--suites`), the reports, the catalogue's `fails` and the docs'
/// tidy check all take it from here, so adding a suite is a module and a
/// variant (ARCHITECTURE.md, "How to add a suite").
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    Unit,
    Parity,
    Property,
    Nullable,
    Latency,
    Size,
    Quality,
    Fallback,
    Observability,
    Rollout,
    Compat,
}

impl Suite {
    /// Every suite, in the order they run.
    pub fn all() -> &'static [Suite] {
        <Suite as clap::ValueEnum>::value_variants()
    }

    /// The suite's name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Unit => "unit",
            Suite::Parity => "parity",
            Suite::Property => "property",
            Suite::Nullable => "nullable",
            Suite::Latency => "latency",
            Suite::Size => "size",
            Suite::Quality => "quality",
            Suite::Fallback => "fallback",
            Suite::Observability => "observability",
            Suite::Rollout => "rollout",
            Suite::Compat => "compat",
        }
    }

    /// The suite named `name` in reports and on the command line.
    pub fn named(name: &str) -> Option<Suite> {
        Suite::all().iter().copied().find(|s| s.name() == name)
    }

    /// What the rest of the harness knows of the suite: each suite's module
    /// declares its own.
    pub fn descriptor(self) -> &'static Descriptor {
        match self {
            Suite::Unit => &unit::DESCRIPTOR,
            Suite::Parity => &parity::DESCRIPTOR,
            Suite::Property => &property::DESCRIPTOR,
            Suite::Nullable => &nullable::DESCRIPTOR,
            Suite::Latency => &latency::DESCRIPTOR,
            Suite::Size => &size::DESCRIPTOR,
            Suite::Quality => &quality::DESCRIPTOR,
            Suite::Fallback => &fallback::DESCRIPTOR,
            Suite::Observability => &observability::DESCRIPTOR,
            Suite::Rollout => &rollout::DESCRIPTOR,
            Suite::Compat => &compat::DESCRIPTOR,
        }
    }

    /// The checks that carry the suite's purpose: the gate counts the suite
    /// as judged only when one of them was (`--require`). Empty: any check.
    pub fn purpose(self) -> &'static [&'static str] {
        self.descriptor().purpose
    }

    /// When the suite runs in a verification.
    pub fn phase(self) -> Phase {
        self.descriptor().phase
    }

    /// Whether the suite needs the run to prepare `need`.
    pub fn needs(self, need: Need) -> bool {
        self.descriptor().needs.contains(&need)
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The order of a verification: the functional suites of every model first,
/// several models at once; then the rollouts, as many at once as their
/// traffic together allows (`rollout::TRAFFIC_BUDGET_PER_S`); then the one
/// latency run of the whole fleet, with nothing else of the harness
/// competing with it; then what reads the endpoint after load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Functional,
    Rollout,
    Fleet,
    After,
}

/// Reads the endpoint's resident memory in bytes, where the target can tell.
pub type MemoryProbe = std::sync::Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// The rows either side of the trees' splits a model is verified on.
#[derive(Debug)]
pub struct Probes {
    pub rows: Vec<Record>,
    /// The artifact's own outputs for the rows, or why it could not run them.
    pub artifact: Option<Result<Vec<Vec<f64>>, String>>,
    /// Derived from `model.onnx` for a bundle without `probes.jsonl`
    /// (`crate::splits`): their outputs are the artifact's, not training's.
    pub derived: bool,
}

/// Everything a suite may look at for one model.
pub struct ModelUnderTest {
    pub bundle: Bundle,
    /// The version below `bundle` in the repository: the last release,
    /// timed beside the candidate by the latency run.
    pub previous: Option<Bundle>,
    /// The last release's bundle: `previous`, else the model's highest
    /// version in the repository the last release was brought in from; or
    /// why there is none.
    pub last_release: Result<Bundle, String>,
    pub samples: Option<Vec<Record>>,
    /// The rows either side of the trees' splits, or why there are none.
    pub probes: Result<Probes, String>,
    pub holdout: Option<Vec<Record>>,
    /// The artifact's own outputs for the samples, or why it could not run them.
    pub artifact: Option<Result<Vec<Vec<f64>>, String>>,
    pub baseline: BaselineReport,
    pub client: Client,
    pub memory: Option<MemoryProbe>,
    /// The endpoint's resident memory once it had loaded the repository.
    pub memory_after_load: Option<u64>,
    /// The size of the image that serves, for a container target.
    pub image_bytes: Option<u64>,
    /// Whether this run started the endpoint, and so may unload and load
    /// its models to measure what each costs.
    pub owns_endpoint: bool,
}

impl std::fmt::Debug for ModelUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelUnderTest")
            .field("model", &self.bundle.name())
            .field("version", &self.bundle.version())
            .finish_non_exhaustive()
    }
}

/// The last release's report of one model, as far as the run knows it.
#[derive(Debug, Clone)]
pub enum BaselineReport {
    /// No `--baseline` was given.
    NotGiven,
    /// The baseline report does not have this model.
    NewModel,
    Found {
        model: ModelReport,
        /// The kind of target the baseline's figures were measured on, when
        /// it is not this run's: its resident figures are not alike.
        elsewhere: Option<String>,
    },
}

impl ModelUnderTest {
    /// A figure of the last release's report, or why there is none: the
    /// skip of a check that compares with it.
    pub fn baseline_metric(&self, suite: Suite, metric: &str) -> Result<f64, (Skip, String)> {
        let report = match &self.baseline {
            BaselineReport::NotGiven => {
                return Err((
                    Skip::NoBaseline,
                    "no baseline report (--baseline)".to_owned(),
                ));
            }
            BaselineReport::NewModel => {
                return Err((
                    Skip::NewModel,
                    "a new model: the baseline report does not have it".to_owned(),
                ));
            }
            BaselineReport::Found { model, .. } => model,
        };
        let figure = report
            .suite(suite.name())
            .and_then(|s| s.metrics.get(metric));
        figure.copied().ok_or_else(|| {
            let release = format!("{} {}", report.name, report.version);
            (
                Skip::NoBaseline,
                format!("the baseline report of {release} has no {suite:?} figure '{metric}'")
                    .replace(&format!("{suite:?}"), suite.name()),
            )
        })
    }
}

/// Runs one suite of one model; `Err` only when the endpoint stops answering.
/// Latency is measured for the whole fleet at once (`latency::run`).
pub async fn run(suite: Suite, model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    let started = Instant::now();
    let mut report = match suite {
        Suite::Unit => unit::run(model),
        Suite::Parity => parity::run(model).await?,
        Suite::Property => property::run(model).await,
        Suite::Nullable => nullable::run(model).await?,
        Suite::Latency => skipped(
            Suite::Latency,
            Skip::NotRun,
            "latency is measured for the whole fleet at once, not model by model",
        ),
        Suite::Size => size::run(model).await?,
        Suite::Quality => quality::run(model).await?,
        Suite::Fallback => fallback::run(model).await?,
        Suite::Observability => observability::run(model).await?,
        Suite::Rollout => rollout::run(model).await?,
        Suite::Compat => compat::run(model).await?,
    };
    plausible::judge(&mut report);
    report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(report)
}

/// Nothing when the endpoint lists Preflight's `extension` (the `what`
/// extension) in `GET /v2`; else the skip of `suite` that says it does not.
async fn offers(
    model: &ModelUnderTest,
    suite: Suite,
    extension: &str,
    what: &str,
) -> Result<Option<SuiteReport>, Unreachable> {
    let (status, text) = model.client.get_text("/v2").await?;
    let offered = status == 200
        && serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| {
            v["extensions"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x == extension))
        });
    Ok((!offered).then(|| {
        skipped(
            suite,
            Skip::Endpoint,
            format!(
                "the endpoint does not offer Preflight's {what} extension (GET /v2 lists no \
                 {extension})"
            ),
        )
    }))
}

/// `needs contract.parity`: of what a check needs, what the bundle lacks.
fn needs(what: &[(&str, bool)]) -> String {
    let missing: Vec<&str> = what
        .iter()
        .filter(|(_, present)| !present)
        .map(|(name, _)| *name)
        .collect();
    format!("needs {}", missing.join(" and "))
}

/// A suite that could not run at all, with why.
fn skipped(suite: Suite, skip: Skip, why: impl Into<String>) -> SuiteReport {
    SuiteReport::new(suite.name(), vec![Check::skipped(suite.name(), skip, why)])
}

/// The first output value that is not finite or lies outside its output's
/// declared range, said as such: a label that names no class, a
/// probability outside [0, 1].
fn out_of_range(manifest: &preflight_bundle::Manifest, outputs: &[Vec<f64>]) -> Option<String> {
    use crate::slots::SlotKind;
    for (slot, column) in crate::slots::slots(manifest).iter().zip(outputs) {
        let feature = &manifest.outputs[slot.output];
        let (min, max) = match slot.kind {
            // float32 may round a probability of 0 or 1 by an ulp past its bound
            // (a binary forest's 1 − p): a score served as a probability lies far outside.
            SlotKind::Probability(_) => (Some(-PROBABILITY_SLACK), Some(1.0 + PROBABILITY_SLACK)),
            _ => (feature.min, feature.max),
        };
        for &x in column {
            if slot.kind == SlotKind::Label && x.is_nan() {
                return Some(format!(
                    "output '{}' names no class of the model",
                    slot.name
                ));
            }
            if !x.is_finite() {
                return Some(format!("output '{}' = {x} is not finite", slot.name));
            }
            if min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m) {
                let bound = |b: Option<f64>| b.map_or("unbounded".to_owned(), |b| b.to_string());
                let (min, max) = match slot.kind {
                    SlotKind::Probability(_) => (Some(0.0), Some(1.0)),
                    _ => (min, max),
                };
                return Some(format!(
                    "output '{}' = {x} is outside its range [{}, {}]",
                    slot.name,
                    bound(min),
                    bound(max)
                ));
            }
        }
    }
    None
}

/// How far past [0, 1] a probability, or past 1 the sum of a row's, may lie:
/// float32 rounding of a few shares.
const PROBABILITY_SLACK: f64 = 1e-4;

/// Rows in one request when a suite sends many.
const CHUNK: usize = 250;

/// Values of a record's inputs, borrowed, for a request.
fn rows<'r>(records: &[&'r Record]) -> Vec<&'r [preflight_bundle::Value]> {
    records.iter().map(|r| r.inputs.as_slice()).collect()
}

#[cfg(test)]
mod tests {
    use super::Suite;

    /// The command line, the JSON and the reports spell a suite alike.
    #[test]
    fn a_suite_has_one_name_everywhere() {
        for &suite in Suite::all() {
            let value = clap::ValueEnum::to_possible_value(&suite).map(|v| v.get_name().to_owned());
            assert_eq!(value.as_deref(), Some(suite.name()));
            let json = serde_json::to_value(suite).ok();
            assert_eq!(json.as_ref().and_then(|v| v.as_str()), Some(suite.name()));
        }
        assert_eq!(Suite::all().len(), 11);
    }
}
