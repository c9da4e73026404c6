//! `preflight verify`: every selected model, every selected suite, one report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use preflight_bundle::{Bundle, Repository};

use crate::client::Unreachable;
use crate::report::{ModelReport, REPORT_FORMAT, Report, Verdict};
use crate::suites::{self, ModelUnderTest, Suite};
use crate::target::{Endpoint, TargetOptions, TargetSpec};

/// What to verify, and against what.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// The model repository.
    pub models: PathBuf,
    pub target: TargetSpec,
    /// The previous release's report.
    pub baseline: Option<PathBuf>,
    /// Where the server's log goes (reports are written by the caller).
    pub out: PathBuf,
    /// Glob patterns on model names (`eta-*`); empty means every model.
    pub only: Vec<String>,
    pub suites: Vec<Suite>,
    /// Models verified at once.
    pub jobs: usize,
    /// How the target is started.
    pub target_options: TargetOptions,
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
pub async fn verify(
    config: &VerifyConfig,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Report, VerifyError> {
    let started = Instant::now();
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let bundles = select(&config.models, &config.only)?;
    let baseline = match &config.baseline {
        Some(path) => Some(crate::report::Report::read(path).map_err(VerifyError::Usage)?),
        None => None,
    };
    std::fs::create_dir_all(&config.out).map_err(|e| {
        VerifyError::Usage(format!(
            "{}: cannot create the report folder: {e}",
            config.out.display()
        ))
    })?;
    let endpoint = Endpoint::start(
        &config.target,
        &config.models,
        &config.out,
        &config.target_options,
    )
    .await
    .map_err(VerifyError::Endpoint)?;

    let semaphore = Arc::new(tokio::sync::Semaphore::new(config.jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, bundle) in bundles.into_iter().enumerate() {
        let model = prepare(bundle, baseline.as_ref(), &endpoint, &config.suites).await?;
        let (semaphore, suites) = (Arc::clone(&semaphore), config.suites.clone());
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let mut reports = Vec::new();
            for suite in suites {
                reports.push(
                    suites::run(suite, &model)
                        .await
                        .map_err(|u: Unreachable| u.to_string())?,
                );
            }
            Ok::<_, String>((
                index,
                model.bundle.name().to_owned(),
                model.bundle.version(),
                reports,
            ))
        });
    }
    let mut models = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined
            .map_err(|e| format!("a verification task failed: {e}"))
            .and_then(|r| r.map_err(|e| format!("the endpoint stopped answering: {e}")));
        let (index, name, version, suites) = match outcome {
            Ok(done) => done,
            Err(message) => {
                tasks.abort_all();
                let log = endpoint.finish().await;
                let hint = log
                    .map(|l| format!("; the server's log: {}", l.display()))
                    .unwrap_or_default();
                return Err(VerifyError::Endpoint(format!("{message}{hint}")));
            }
        };
        for suite in &suites {
            progress(&format!(
                "{name} {version}: {} {} ({:.1} s){}",
                suite.suite,
                suite.verdict.as_str(),
                suite.duration_ms / 1000.0,
                if suite.verdict == Verdict::Failed {
                    format!(": {}", suite.failures())
                } else {
                    String::new()
                }
            ));
        }
        let verdict = Verdict::of(suites.iter().map(|s| s.verdict));
        models.push((
            index,
            ModelReport {
                name,
                version,
                verdict,
                suites,
            },
        ));
    }
    models.sort_by_key(|(index, _)| *index);
    let models: Vec<ModelReport> = models.into_iter().map(|(_, m)| m).collect();
    endpoint.finish().await;
    Ok(Report {
        format: REPORT_FORMAT,
        preflight_version: env!("CARGO_PKG_VERSION").to_owned(),
        verdict: Verdict::of(models.iter().map(|m| m.verdict)),
        repository: config.models.display().to_string(),
        target: config.target.describe(),
        started_at: format!("{started_at}"),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        models,
    })
}

/// The served (highest) version of every model whose name matches `only`.
fn select(models: &Path, only: &[String]) -> Result<Vec<Bundle>, VerifyError> {
    let repo = Repository::scan(models).map_err(|e| VerifyError::Usage(e.to_string()))?;
    if let Some(problem) = repo.problems().first() {
        return Err(VerifyError::Usage(problem.to_string()));
    }
    let selected: Vec<Bundle> = repo
        .models()
        .iter()
        .filter(|m| only.is_empty() || only.iter().any(|pattern| glob_match(pattern, &m.name)))
        .map(|m| Bundle::open(&m.latest().dir).map_err(|e| VerifyError::Usage(e.to_string())))
        .collect::<Result<_, _>>()?;
    if selected.is_empty() {
        return Err(VerifyError::Usage(format!(
            "no model in {} matches {}",
            models.display(),
            if only.is_empty() {
                "(any)".to_owned()
            } else {
                only.join(", ")
            }
        )));
    }
    Ok(selected)
}

/// Reads what the suites need; a file that breaks the format is a usage error.
async fn prepare(
    bundle: Bundle,
    baseline: Option<&Report>,
    endpoint: &Endpoint,
    suites: &[Suite],
) -> Result<ModelUnderTest, VerifyError> {
    let usage = |e: preflight_bundle::Error| VerifyError::Usage(e.to_string());
    let samples = bundle.samples().map_err(usage)?;
    let holdout = bundle.holdout().map_err(usage)?;
    let needs_artifact = suites
        .iter()
        .any(|s| matches!(s, Suite::Unit | Suite::Parity));
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
    let baseline = baseline.and_then(|b| b.model(bundle.name())).cloned();
    Ok(ModelUnderTest {
        bundle,
        samples,
        holdout,
        artifact,
        baseline,
        client: endpoint.client.clone(),
        memory: endpoint.memory.clone(),
        memory_after_load: endpoint.memory_after_load,
        image_bytes: endpoint.image_bytes,
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
