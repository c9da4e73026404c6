//! `preflight verify`: every selected model, every selected suite, one report.
//!
//! A verification runs in phases (`suites::Phase`): the functional suites of
//! every model, `jobs` models at once; then the rollouts, within a budget of
//! traffic; then one latency run for the whole fleet (`suites::latency`); then
//! the suites that read the endpoint after load.

mod phases;
mod prepare;
mod select;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::gate::{Policy, Requirement};
use crate::last_release::{self, LastRelease};
use crate::progress::{Event, Progress};
use crate::report::{Aborted, REPORT_FORMAT, Report, Verdict};
use crate::shard::Shard;
use crate::suites::latency::run::FleetOptions;
use crate::suites::{Need, Phase, Suite};
use crate::target::{Endpoint, TargetOptions, TargetSpec};
use phases::run_phases;
use select::{Selected, select};

/// What to verify, and against what.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// The model repository.
    pub models: PathBuf,
    pub target: TargetSpec,
    /// The previous release's report.
    pub baseline: Option<PathBuf>,
    /// The previous release's endpoint, timed beside the target by the
    /// latency run (started on the same repository when it is a process or
    /// a container).
    pub baseline_target: Option<TargetSpec>,
    /// A repository that holds the last release, served beside the target
    /// by an endpoint of the same kind for the latency run.
    pub baseline_models: Option<PathBuf>,
    /// Where the server's log goes (reports are written by the caller).
    pub out: PathBuf,
    /// Glob patterns on model names (`eta-*`); empty means every model.
    pub only: Vec<String>,
    /// This run's share of the models, when the release is split over runners.
    pub shard: Option<Shard>,
    pub suites: Vec<Suite>,
    /// Models whose functional suites run at once.
    pub jobs: usize,
    /// How the target is started.
    pub target_options: TargetOptions,
    /// Which skips fail the release.
    pub policy: Policy,
}

/// Why a run ended without a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The command line, a bundle or the baseline is wrong: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The endpoint could not be reached, started, or stopped answering: exit code 3.
    #[error("{0}")]
    Endpoint(String),
}

impl VerifyError {
    pub fn exit_code(&self) -> u8 {
        match self {
            VerifyError::Usage(_) => crate::exit::USAGE,
            VerifyError::Endpoint(_) => crate::exit::ENDPOINT,
        }
    }
}

/// Runs the suites; `progress` is told of each suite as it ends.
pub async fn verify(config: &VerifyConfig, progress: &Progress) -> Result<Report, VerifyError> {
    let started_at = SystemTime::now();
    if let Some(library) = &config.target_options.ort_lib {
        crate::artifact::use_library(library);
    }
    let selected = select(&config.models, &config.only, config.shard)?;
    gate_before(config, &selected)?;
    let baseline = match &config.baseline {
        Some(path) => Some(Report::read(path).map_err(VerifyError::Usage)?),
        None => None,
    };
    std::fs::create_dir_all(&config.out).map_err(|e| {
        VerifyError::Usage(format!(
            "{}: cannot create the report folder: {e}",
            config.out.display()
        ))
    })?;
    // The latency run times the last release; compat reads its bundle.
    let last = if config.suites.iter().any(|s| s.needs(Need::LastRelease)) {
        last_release::find(
            &config.target,
            &config.models,
            config.baseline_target.as_ref(),
            config.baseline_models.as_deref(),
            baseline.as_ref(),
            &config.out,
        )
        .map_err(VerifyError::Usage)?
    } else {
        LastRelease::Absent("no suite that reads the last release is among the suites".to_owned())
    };
    let last_bundles = Arc::new(last_release::bundles(
        &last,
        config.baseline_target.is_some(),
    ));
    let (endpoint, baseline_endpoint) = start_endpoints(config, &last).await?;
    progress(&Event::Planned {
        suites: selected.len() * config.suites.len(),
        at: &endpoint.describe(),
    });
    let options = FleetOptions {
        baseline_target: baseline_endpoint.as_ref().map(|e| e.client.clone()),
        absent: match last {
            LastRelease::Absent(why) => Some(why),
            LastRelease::Served { .. } => None,
        },
    };
    let outcome = run_phases(
        config,
        selected,
        baseline.as_ref(),
        (&endpoint, &last_bundles),
        &options,
        progress,
    )
    .await;
    if let Some(b) = baseline_endpoint {
        b.finish().await;
    }
    let log = endpoint.finish().await;
    let (models, latency_run) = outcome.map_err(|e| match e {
        VerifyError::Endpoint(message) => VerifyError::Endpoint(match log {
            Some(log) => format!("{message}; the server's log: {}", log.display()),
            None => message,
        }),
        usage => usage,
    })?;
    let mut report = Report {
        verdict: Verdict::of(models.iter().map(|m| m.verdict)),
        latency_runs: latency_run.into_iter().collect(),
        models,
        ..header(config, started_at)
    };
    config.policy.apply(&mut report);
    Ok(report)
}

/// The report of a run that ended with `error` before a verdict on every
/// model: what was asked, and why it stopped. Its verdict is failed.
pub fn aborted(config: &VerifyConfig, started_at: SystemTime, error: &VerifyError) -> Report {
    Report {
        aborted: Some(Aborted {
            exit_code: error.exit_code(),
            error: error.to_string(),
        }),
        ..header(config, started_at)
    }
}

/// What every report of `config` says of itself, with no model yet.
fn header(config: &VerifyConfig, started_at: SystemTime) -> Report {
    Report {
        format: REPORT_FORMAT,
        preflight_version: env!("CARGO_PKG_VERSION").to_owned(),
        verdict: Verdict::Failed,
        repository: config.models.display().to_string(),
        target: config.target.describe(),
        protocol: (config.target.protocol(&config.target_options).as_str()).to_owned(),
        required: config.policy.describe(),
        started_at: started_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
            .to_string(),
        duration_ms: started_at
            .elapsed()
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        commit: commit(&config.models),
        baseline: config.baseline.as_ref().map(|p| p.display().to_string()),
        aborted: None,
        shard: config.shard.map(|s| s.to_string()),
        latency_runs: Vec::new(),
        models: Vec::new(),
    }
}

/// The commit verified: `GITHUB_SHA` in GitHub Actions, else the git `HEAD`
/// of the repository folder, when it is in git.
fn commit(models: &Path) -> Option<String> {
    if let Some(sha) = std::env::var("GITHUB_SHA").ok().filter(|s| !s.is_empty()) {
        return Some(sha);
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(models)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let sha = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !sha.is_empty()).then_some(sha)
}

/// The target and, where the last release is served apart, its endpoint;
/// the first is stopped again when the second cannot start.
async fn start_endpoints(
    config: &VerifyConfig,
    last: &LastRelease,
) -> Result<(Endpoint, Option<Endpoint>), VerifyError> {
    let options = &config.target_options;
    let endpoint = Endpoint::start(&config.target, &config.models, &config.out, options)
        .await
        .map_err(VerifyError::Endpoint)?;
    let LastRelease::Served { target, models } = last else {
        return Ok((endpoint, None));
    };
    // Only a suite of the fleet phase times the last release beside.
    let timed = config
        .suites
        .iter()
        .any(|s| s.phase() == Phase::Fleet && s.needs(Need::LastRelease));
    if !timed {
        return Ok((endpoint, None));
    }
    let out = config.out.join("last-release-endpoint");
    let started = async {
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        Endpoint::start(target, models, &out, options).await
    };
    match started.await {
        Ok(baseline) => Ok((endpoint, Some(baseline))),
        Err(e) => {
            endpoint.finish().await;
            Err(VerifyError::Endpoint(format!(
                "the last release's endpoint ({}): {e}",
                models.display()
            )))
        }
    }
}

/// What the policy forbids before anything runs: comparisons without a
/// baseline report, and manifests with keys the format does not know.
fn gate_before(config: &VerifyConfig, selected: &[Selected]) -> Result<(), VerifyError> {
    if config.policy.requires(Requirement::Baseline) && config.baseline.is_none() {
        return Err(VerifyError::Usage(
            "--require baseline: give --baseline REPORT.json, the last release's report \
            (a first release has none: leave baseline out of --require)"
                .to_owned(),
        ));
    }
    if config.policy.requires(Requirement::Manifest) {
        let warnings: Vec<String> = selected
            .iter()
            .flat_map(|s| &s.bundle.manifest().warnings)
            .map(ToString::to_string)
            .collect();
        if !warnings.is_empty() {
            return Err(VerifyError::Usage(format!(
                "--require manifest: {}",
                warnings.join("\n")
            )));
        }
    }
    Ok(())
}
