//! `preflight verify`: every selected model, every selected suite, one report.
//!
//! A verification runs in phases (`suites::Phase`): the functional suites of
//! every model, `jobs` models at once; then the rollouts, within a budget of
//! traffic; then one latency run for the whole fleet (`suites::latency`); then
//! the suites that read the endpoint after load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use preflight_bundle::{Bundle, Repository};

use crate::client::Unreachable;
use crate::gate::{Policy, Requirement};
use crate::last_release::{self, LastRelease};
use crate::progress::{Event, Progress};
use crate::report::{Aborted, ModelReport, REPORT_FORMAT, Report, SuiteReport, Verdict};
use crate::shard::Shard;
use crate::suites::latency::run::{self as fleet, FleetOptions};
use crate::suites::{self, BaselineReport, ModelUnderTest, Need, Phase, Suite};
use crate::target::{Endpoint, TargetOptions, TargetSpec};

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

/// A model selected for verification: its served version and the one below.
struct Selected {
    bundle: Bundle,
    previous: Option<Bundle>,
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
        LastRelease::Absent("neither latency nor compat is among the suites".to_owned())
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

type Phased = (Vec<ModelReport>, Option<crate::report::LatencyRun>);

async fn run_phases(
    config: &VerifyConfig,
    selected: Vec<Selected>,
    baseline: Option<&Report>,
    (endpoint, last_bundles): (&Endpoint, &Arc<last_release::Bundles>),
    options: &FleetOptions,
    progress: &Progress,
) -> Result<Phased, VerifyError> {
    let wanted = |phase: Phase| -> Vec<Suite> {
        config
            .suites
            .iter()
            .copied()
            .filter(|s| s.phase() == phase)
            .collect()
    };
    let models = functional(
        config,
        selected,
        baseline,
        (endpoint, last_bundles),
        &wanted(Phase::Functional),
        progress,
    )
    .await?;
    let mut reports: Vec<BTreeMap<Suite, SuiteReport>> =
        models.iter().map(|(_, r)| r.clone()).collect();
    let models: Vec<Arc<ModelUnderTest>> = models.into_iter().map(|(m, _)| m).collect();

    if wanted(Phase::Rollout).contains(&Suite::Rollout) {
        let rolled = rollouts(&models, progress).await?;
        for (reports, report) in reports.iter_mut().zip(rolled) {
            reports.insert(Suite::Rollout, report);
        }
    }
    let mut latency_run = None;
    if !wanted(Phase::Fleet).is_empty() {
        let (latency, run) = fleet::run(&models, options).await.map_err(stopped)?;
        for (position, mut report) in latency {
            suites::plausible::judge(&mut report);
            tell(progress, &models[position], &report);
            reports[position].insert(Suite::Latency, report);
        }
        latency_run = run;
    }
    for suite in wanted(Phase::After) {
        for (model, reports) in models.iter().zip(&mut reports) {
            let report = suites::run(suite, model).await.map_err(stopped)?;
            tell(progress, model, &report);
            reports.insert(suite, report);
        }
    }
    let models = models
        .iter()
        .zip(reports)
        .map(|(model, mut by_suite)| {
            let suites: Vec<SuiteReport> = config
                .suites
                .iter()
                .filter_map(|s| by_suite.remove(s))
                .collect();
            let manifest = model.bundle.manifest();
            ModelReport {
                name: model.bundle.name().to_owned(),
                version: model.bundle.version(),
                verdict: Verdict::of(suites.iter().map(|s| s.verdict)),
                warnings: manifest.warnings.iter().map(ToString::to_string).collect(),
                suites,
            }
        })
        .collect();
    Ok((models, latency_run))
}

/// The rollout suite of every model, as many at once as their steady
/// traffic together stays within `rollout::TRAFFIC_BUDGET_PER_S`: a rollout
/// mostly waits on its traffic, and one at a time would cost a fleet
/// minutes. The reports are in the models' order.
async fn rollouts(
    models: &[Arc<ModelUnderTest>],
    progress: &Progress,
) -> Result<Vec<SuiteReport>, VerifyError> {
    let budget = Arc::new(tokio::sync::Semaphore::new(
        suites::rollout::TRAFFIC_BUDGET_PER_S as usize,
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, model) in models.iter().enumerate() {
        let (model, budget, progress) =
            (Arc::clone(model), Arc::clone(&budget), Arc::clone(progress));
        let rate = suites::rollout::rate(model.bundle.manifest()).ceil() as u32;
        tasks.spawn(async move {
            let _traffic = budget.acquire_many_owned(rate).await;
            let report = suites::run(Suite::Rollout, &model).await.map_err(stopped)?;
            tell(&progress, &model, &report);
            Ok::<_, VerifyError>((index, report))
        });
    }
    in_order(tasks).await
}

type Verified = (Arc<ModelUnderTest>, BTreeMap<Suite, SuiteReport>);

/// Prepares every model and runs its functional suites, `jobs` models at
/// once; the models come back in the order they were selected.
async fn functional(
    config: &VerifyConfig,
    selected: Vec<Selected>,
    baseline: Option<&Report>,
    (endpoint, last_bundles): (&Endpoint, &Arc<last_release::Bundles>),
    suites: &[Suite],
    progress: &Progress,
) -> Result<Vec<Verified>, VerifyError> {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(config.jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let needs_artifact = suites.iter().any(|s| s.needs(Need::Artifact));
    for (index, selected) in selected.into_iter().enumerate() {
        let baseline = match baseline {
            None => BaselineReport::NotGiven,
            Some(report) => {
                let elsewhere = (report.target_kind() != config.target.kind())
                    .then(|| report.target_kind().to_owned());
                report.model(selected.bundle.name()).cloned().map_or(
                    BaselineReport::NewModel,
                    |model| BaselineReport::Found { model, elsewhere },
                )
            }
        };
        let (semaphore, suites) = (Arc::clone(&semaphore), suites.to_vec());
        let endpoint = EndpointFacts::of(endpoint);
        let progress = Arc::clone(progress);
        let last_bundles = Arc::clone(last_bundles);
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let last_release =
                last_release::bundle(&last_bundles, &selected.bundle, selected.previous.as_ref());
            let model = Arc::new(
                prepare(selected, last_release, baseline, endpoint, needs_artifact).await?,
            );
            let mut reports = BTreeMap::new();
            for suite in suites {
                let report = suites::run(suite, &model).await.map_err(stopped)?;
                tell(&progress, &model, &report);
                reports.insert(suite, report);
            }
            Ok::<_, VerifyError>((index, (model, reports)))
        });
    }
    in_order(tasks).await
}

/// Every task's result, in the order of the indices they give; the first
/// error stops the others.
async fn in_order<T: 'static>(
    mut tasks: tokio::task::JoinSet<Result<(usize, T), VerifyError>>,
) -> Result<Vec<T>, VerifyError> {
    let mut done = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(one)) => done.push(one),
            Ok(Err(e)) => {
                tasks.abort_all();
                return Err(e);
            }
            Err(e) => {
                tasks.abort_all();
                return Err(VerifyError::Endpoint(format!(
                    "a verification task failed: {e}"
                )));
            }
        }
    }
    done.sort_by_key(|(index, _)| *index);
    Ok(done.into_iter().map(|(_, v)| v).collect())
}

/// The endpoint stopped answering in the middle of a suite: exit code 3.
fn stopped(u: Unreachable) -> VerifyError {
    VerifyError::Endpoint(format!("the endpoint stopped answering: {u}"))
}

fn tell(progress: &Progress, model: &ModelUnderTest, report: &SuiteReport) {
    progress(&Event::SuiteEnded {
        model: model.bundle.name(),
        version: model.bundle.version(),
        report,
    });
}

/// The served (highest) version of every model whose name matches `only`
/// and falls in `shard`, with the version below it.
fn select(
    models: &Path,
    only: &[String],
    shard: Option<Shard>,
) -> Result<Vec<Selected>, VerifyError> {
    let repo = Repository::scan(models).map_err(|e| VerifyError::Usage(e.to_string()))?;
    if let Some(problem) = repo.problems().first() {
        return Err(VerifyError::Usage(problem.to_string()));
    }
    let open = |dir: &Path| Bundle::open(dir).map_err(|e| VerifyError::Usage(e.to_string()));
    let matching: Vec<_> = repo
        .models()
        .iter()
        .filter(|m| only.is_empty() || only.iter().any(|pattern| glob_match(pattern, &m.name)))
        .collect();
    if matching.is_empty() {
        // The nearest names to each pattern, for a misspelt one.
        let nearest: Vec<&str> = only
            .iter()
            .filter_map(|pattern| {
                let names = repo.models().iter().map(|m| m.name.as_str());
                names
                    .map(|name| (strsim::levenshtein(pattern, name), name))
                    .filter(|(distance, _)| *distance <= 2)
                    .min()
                    .map(|(_, name)| name)
            })
            .collect();
        let hint = if nearest.is_empty() {
            String::new()
        } else {
            format!("; did you mean {}?", nearest.join(", "))
        };
        return Err(VerifyError::Usage(format!(
            "no model in {} matches {}{hint}",
            models.display(),
            if only.is_empty() {
                "(any)".to_owned()
            } else {
                only.join(", ")
            }
        )));
    }
    // An empty shard is not an error: a release of few models split over
    // many runners leaves some with nothing to do.
    matching
        .into_iter()
        .filter(|m| shard.is_none_or(|s| s.holds(&m.name)))
        .map(|m| {
            let previous = match m.versions.len() {
                0 | 1 => None,
                n => Some(open(&m.versions[n - 2].dir)?),
            };
            Ok(Selected {
                bundle: open(&m.latest().dir)?,
                previous,
            })
        })
        .collect()
}

/// What every model's suites need of the endpoint.
#[derive(Clone)]
struct EndpointFacts {
    client: crate::client::Client,
    memory: Option<suites::MemoryProbe>,
    memory_after_load: Option<u64>,
    image_bytes: Option<u64>,
    owned: bool,
}

impl EndpointFacts {
    fn of(endpoint: &Endpoint) -> Self {
        Self {
            owned: endpoint.owned(),
            client: endpoint.client.clone(),
            memory: endpoint.memory.clone(),
            memory_after_load: endpoint.memory_after_load,
            image_bytes: endpoint.image_bytes,
        }
    }
}

/// Reads what the suites need; a file that breaks the format is a usage error.
async fn prepare(
    selected: Selected,
    last_release: Result<Bundle, String>,
    baseline: BaselineReport,
    endpoint: EndpointFacts,
    needs_artifact: bool,
) -> Result<ModelUnderTest, VerifyError> {
    let Selected { bundle, previous } = selected;
    endpoint
        .client
        .learn_versions(bundle.name())
        .await
        .map_err(stopped)?;
    let usage = |e: preflight_bundle::Error| VerifyError::Usage(e.to_string());
    let samples = bundle.samples().map_err(usage)?;
    let holdout = bundle.holdout().map_err(usage)?;
    let artifact = match (&samples, needs_artifact) {
        (Some(records), true) => {
            let (bundle, records) = (bundle.clone(), records.clone());
            Some(
                tokio::task::spawn_blocking(move || crate::artifact::predict(&bundle, &records))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string())),
            )
        }
        _ => None,
    };
    Ok(ModelUnderTest {
        bundle,
        previous,
        last_release,
        samples,
        holdout,
        artifact,
        baseline,
        client: endpoint.client,
        memory: endpoint.memory,
        memory_after_load: endpoint.memory_after_load,
        image_bytes: endpoint.image_bytes,
        owns_endpoint: endpoint.owned,
    })
}

/// `*` matches any run of characters, `?` any one; everything else itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}
