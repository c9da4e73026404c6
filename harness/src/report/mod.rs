//! The release report: a verdict per model and suite, with the evidence.

mod check;

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use self::check::{Check, Limit, Skip, SuiteReport, Verdict};

/// The version of the report's JSON shape.
pub const REPORT_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelReport {
    pub name: String,
    pub version: u64,
    pub verdict: Verdict,
    /// Probable mistakes in the bundle that fail nothing: keys of the
    /// manifest that the format does not know, with file and line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub suites: Vec<SuiteReport>,
}

impl ModelReport {
    /// Every skipped check of the model, with its suite.
    pub fn skips(&self) -> impl Iterator<Item = (&SuiteReport, &Check)> {
        self.suites.iter().flat_map(|s| {
            s.checks
                .iter()
                .filter(|c| c.verdict == Verdict::Skipped)
                .map(move |c| (s, c))
        })
    }

    pub fn suite(&self, name: &str) -> Option<&SuiteReport> {
        self.suites.iter().find(|s| s.suite == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    pub format: u32,
    pub preflight_version: String,
    pub verdict: Verdict,
    /// What was verified: the repository and the endpoint.
    pub repository: String,
    pub target: String,
    /// What inference was verified over: `REST`, or `gRPC` (`--protocol
    /// grpc`); a report from before gRPC was REST.
    #[serde(default = "rest")]
    pub protocol: String,
    pub started_at: String,
    pub duration_ms: f64,
    /// The commit verified: `GITHUB_SHA` in GitHub Actions, else the
    /// repository folder's git `HEAD`, when it is in git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The last release's report this one was compared with (`--baseline`),
    /// as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Why the run ended before a verdict on every model: the reports of an
    /// aborted run carry the error, and its verdict is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Aborted>,
    /// What the gate required (`--require`): skips of these fail the release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<String>,
    /// `K/N` when this run verified one shard of the release; absent for a
    /// whole release, merged shards included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The fleet latency run: what was asked, offered and sent. One per run;
    /// a merged report keeps each shard's, in shard order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_runs: Vec<LatencyRun>,
    pub models: Vec<ModelReport>,
}

/// A run that ended without a verdict on every model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Aborted {
    /// The exit code: 2 for a usage, bundle or baseline error, 3 for an
    /// endpoint that could not be reached, started, or stopped answering.
    pub exit_code: u8,
    pub error: String,
}

/// The one latency run of a verification, for the whole fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LatencyRun {
    /// Models timed.
    pub models: usize,
    /// Requests per second the target and the harness sustained together in
    /// the closed-loop warm-up.
    pub capacity_per_s: f64,
    /// The sum of the contract rates of every timed version.
    pub asked_per_s: f64,
    /// What the first round offered: the asked rate, scaled down to half the
    /// capacity when it would not fit.
    pub offered_per_s: f64,
    /// `offered_per_s / asked_per_s`.
    pub scale: f64,
    /// The first round and the extensions for inconclusive verdicts.
    pub rounds: u32,
    /// Timed requests sent, all rounds.
    pub requests: u64,
    pub duration_ms: f64,
}

/// Skipped checks of one kind: the same check of the same suite, skipped
/// for the same sort of reason, in some models.
#[derive(Debug, Clone, PartialEq)]
pub struct SkipGroup {
    pub suite: String,
    pub check: String,
    pub kind: &'static str,
    /// `name version` of each model.
    pub models: Vec<String>,
    /// The first model's message.
    pub example: String,
}

impl SkipGroup {
    /// The models, the first `most` by name and the rest counted.
    pub fn models_line(&self, most: usize) -> String {
        if self.models.len() > most {
            let rest = self.models.len() - most;
            format!("{} and {rest} more", self.models[..most].join(", "))
        } else {
            self.models.join(", ")
        }
    }
}

/// What a report that does not say its protocol was verified over.
fn rest() -> String {
    "REST".to_owned()
}

impl Report {
    /// The kind of target the figures were measured on: `process`,
    /// `container`, `url` or `grpc`, from `target`.
    pub fn target_kind(&self) -> &str {
        if self.target.starts_with("grpc://") {
            return "grpc";
        }
        self.target
            .split_once('=')
            .map_or(&self.target, |(kind, _)| kind)
    }

    /// How the figures were measured, for comparing them: the target's kind,
    /// with ` over gRPC` where inference went over gRPC.
    pub fn measured_on(&self) -> String {
        match self.protocol.as_str() {
            "REST" => self.target_kind().to_owned(),
            protocol => format!("{} over {protocol}", self.target_kind()),
        }
    }

    /// Every skipped check of the report, grouped by suite, check and kind.
    pub fn skip_groups(&self) -> Vec<SkipGroup> {
        let mut groups: Vec<SkipGroup> = Vec::new();
        for model in &self.models {
            for (suite, check) in model.skips() {
                let kind = check.skip.map_or("skipped", Skip::as_str);
                let who = format!("{} {}", model.name, model.version);
                let same = |g: &&mut SkipGroup| {
                    g.suite == suite.suite && g.check == check.name && g.kind == kind
                };
                match groups.iter_mut().find(same) {
                    Some(group) => group.models.push(who),
                    None => groups.push(SkipGroup {
                        suite: suite.suite.clone(),
                        check: check.name.clone(),
                        kind,
                        models: vec![who],
                        example: check.message.clone(),
                    }),
                }
            }
        }
        groups
    }

    /// What the gate's policy made of the skips, in one sentence.
    pub fn policy_line(&self) -> String {
        if self.required.is_empty() {
            "no `--require` was given, so no skip fails this release".to_owned()
        } else {
            format!(
                "`--require {}` allows these; the skips it forbids are failures",
                self.required.join(",")
            )
        }
    }

    /// Every failed check, model by model in report order: what a reader
    /// needs first.
    pub fn failures(&self) -> Vec<(&ModelReport, &SuiteReport, &Check)> {
        self.models
            .iter()
            .flat_map(|m| {
                m.suites.iter().flat_map(move |s| {
                    s.checks
                        .iter()
                        .filter(|c| c.verdict == Verdict::Failed)
                        .map(move |c| (m, s, c))
                })
            })
            .collect()
    }

    /// The suites that some model of the report ran, in running order:
    /// the columns of the verdict tables.
    pub fn suite_names(&self) -> Vec<&'static str> {
        crate::Suite::all()
            .iter()
            .map(|s| s.name())
            .filter(|s| self.models.iter().any(|m| m.suite(s).is_some()))
            .collect()
    }

    /// The JSON Schema of `report.json`, generated from these types; the
    /// committed `harness/report.schema.json` is checked against it.
    pub fn json_schema() -> String {
        let schema = schemars::schema_for!(Report);
        serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
    }

    pub fn model(&self, name: &str) -> Option<&ModelReport> {
        self.models.iter().find(|m| m.name == name)
    }

    /// `fixtures/baseline/report.json`, for the unit tests.
    #[cfg(test)]
    pub(crate) fn committed_baseline() -> Self {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/baseline/report.json"
        );
        Self::read(Path::new(path)).expect("the committed baseline")
    }

    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the report: {e}", path.display()))?;
        let report: Report = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}:{}: not a preflight report: {e}",
                path.display(),
                e.line()
            )
        })?;
        if report.format != REPORT_FORMAT {
            return Err(format!(
                "{}: report format {} is not the {REPORT_FORMAT} this preflight reads",
                path.display(),
                report.format
            ));
        }
        Ok(report)
    }
}
