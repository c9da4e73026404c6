//! The phases of a verification (`suites::Phase`), in order: every model's
//! functional suites, `jobs` models at once; the rollouts within a budget
//! of traffic; the one latency run of the fleet; the suites that read the
//! endpoint after load.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::prepare::{EndpointFacts, prepare};
use super::select::Selected;
use super::{VerifyConfig, VerifyError};
use crate::client::Unreachable;
use crate::last_release;
use crate::progress::{Event, Progress};
use crate::report::{ModelReport, Report, SuiteReport, Verdict};
use crate::suites::latency::run::{self as fleet, FleetOptions};
use crate::suites::{self, BaselineReport, ModelUnderTest, Need, Phase, Suite};
use crate::target::{Endpoint, Protocol};

type Phased = (Vec<ModelReport>, Option<crate::report::LatencyRun>);

pub(super) async fn run_phases(
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
                // Figures compare only with figures measured alike: on the
                // same kind of target, over the same protocol.
                let here = match config.target.protocol(&config.target_options) {
                    Protocol::Rest => config.target.kind().to_owned(),
                    protocol => format!("{} over {}", config.target.kind(), protocol.as_str()),
                };
                let elsewhere = (report.measured_on() != here).then(|| report.measured_on());
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
pub(super) fn stopped(u: Unreachable) -> VerifyError {
    VerifyError::Endpoint(format!("the endpoint stopped answering: {u}"))
}

fn tell(progress: &Progress, model: &ModelUnderTest, report: &SuiteReport) {
    progress(&Event::SuiteEnded {
        model: model.bundle.name(),
        version: model.bundle.version(),
        report,
    });
}
