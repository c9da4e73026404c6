//! The fleet latency run: one open-loop schedule for every selected model,
//! each beside its last release where that can be served, instead of one
//! load test per model. `docs/harness.md` ("Latency at fleet scale") gives
//! the design and its trade-offs.
//!
//! 1. Every version to be timed becomes an [`Arm`]; a closed-loop
//!    probe warms them all up and measures what the target can take.
//! 2. A round interleaves every model's requests at its contract rate,
//!    scaled down uniformly to a share of that capacity.
//! 3. Each model is judged on its samples; a model whose verdict is still
//!    inconclusive gets another round, up to its contract's `requests`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use preflight_bundle::LatencyBudget;

use super::arms::{baseline_arm, bodies};
use super::load::{self, Arm, Sample};
use super::schedule::{self, Lane, Offer};
use super::{self as latency, Baseline, Measured, stats};
use crate::client::{Client, Unreachable};
use crate::report::{LatencyRun, SuiteReport};
use crate::suites::ModelUnderTest;

/// The share of the probed capacity the schedule offers: enough headroom
/// that latencies measure the target, not a queue in front of it.
pub(crate) const UTILISATION: f64 = 0.5;
/// Unrecorded warm-up requests per arm, which are also the capacity probe.
const WARM_UP_PER_ARM: u64 = 4;
/// The probe runs at least this long, so that its rate means something.
const PROBE_TIME: Duration = Duration::from_millis(1000);
/// Rounds at most: the first, and extensions for inconclusive verdicts.
const MAX_ROUNDS: u32 = 4;

/// Requests per version in a model's first round: the count the 95 %
/// interval of p99 needs to span at most ±1.13 percentile points, from about
/// p97.9 up (`stats::requests_for`): 298. A finer p99 (±0.9 points, 470
/// requests) would cost half as much again in wall time on every fleet;
/// `docs/harness.md` says why this precision was chosen.
pub(crate) fn first_round_requests() -> u64 {
    stats::requests_for(0.99, P99_PRECISION)
}

/// The half-width of p99's 95 % interval, in quantile terms, that sets the
/// first round's requests.
pub(crate) const P99_PRECISION: f64 = 0.0113;

/// Where the last release of each model is served, when not beside the
/// candidate in the same repository.
#[derive(Debug, Clone, Default)]
pub(crate) struct FleetOptions {
    /// The last release's endpoint (`--baseline-target`, or one started on
    /// `--baseline-models`): its default version of a model is the
    /// baseline of a candidate whose repository holds no version below.
    pub(crate) baseline_target: Option<Client>,
    /// Why there is no such endpoint, for the report.
    pub(crate) absent: Option<String>,
}

/// Runs the fleet and judges every model that has what latency needs;
/// the reports are keyed by the models' positions in `models`.
pub(crate) async fn run(
    models: &[Arc<ModelUnderTest>],
    options: &FleetOptions,
) -> Result<Timed, Unreachable> {
    // The run has a single-threaded runtime of its own, on a thread of its
    // own, with HTTP clients of its own: every request's tasks, connections
    // and wake-ups stay on one thread, which halves the harness's cost per
    // request against the shared multi-thread runtime (benches/README.md),
    // and leaves more of the machine to the endpoint.
    let (models, options) = (models.to_vec(), options.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("preflight-fleet".to_owned())
        .spawn(move || {
            let outcome = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(run_here(&models, &options)),
                Err(e) => Err(Unreachable {
                    url: "the latency run".to_owned(),
                    reason: format!("cannot start its runtime: {e}"),
                }),
            };
            let _ = tx.send(outcome);
        });
    if let Err(e) = thread {
        return Err(Unreachable {
            url: "the latency run".to_owned(),
            reason: format!("cannot start its thread: {e}"),
        });
    }
    rx.await.unwrap_or_else(|_| {
        Err(Unreachable {
            url: "the latency run".to_owned(),
            reason: "its thread ended without a result".to_owned(),
        })
    })
}

/// What the fleet run gives back: each timed model's report, keyed by its
/// position, and the run's summary.
pub(crate) type Timed = (BTreeMap<usize, SuiteReport>, Option<LatencyRun>);

async fn run_here(
    models: &[Arc<ModelUnderTest>],
    options: &FleetOptions,
) -> Result<Timed, Unreachable> {
    let started = Instant::now();
    let mut clients = Clients::default();
    let mut reports = BTreeMap::new();
    let mut arms = Vec::new();
    let mut entries = Vec::new();
    for (position, model) in models.iter().enumerate() {
        match latency::needs(model) {
            Err(skip) => {
                reports.insert(position, *skip);
            }
            Ok(budget) => {
                let entry =
                    Entry::new(position, model, budget, options, &mut clients, &mut arms).await?;
                entries.push(entry);
            }
        }
    }
    if entries.is_empty() {
        return Ok((reports, None));
    }
    let arms: Arc<[Arm]> = arms.into();
    let capacity = load::probe(&arms, WARM_UP_PER_ARM, PROBE_TIME).await?;
    let mut summary = LatencyRun {
        models: entries.len(),
        capacity_per_s: capacity,
        asked_per_s: 0.0,
        offered_per_s: 0.0,
        scale: 1.0,
        rounds: 0,
        requests: 0,
        duration_ms: 0.0,
    };
    let mut pending: Vec<usize> = (0..entries.len()).collect();
    while !pending.is_empty() && summary.rounds < MAX_ROUNDS {
        let lanes: Vec<Lane> = pending.iter().map(|&e| entries[e].next_lane()).collect();
        let offer = Offer::new(&lanes, capacity * UTILISATION);
        if summary.rounds == 0 {
            (summary.asked_per_s, summary.offered_per_s, summary.scale) =
                (offer.asked, offer.offered, offer.scale);
        }
        let sends = schedule::interleave(&lanes, offer.scale);
        summary.requests += sends.len() as u64;
        summary.rounds += 1;
        let mut by_arm: Vec<Vec<Sample>> = vec![Vec::new(); arms.len()];
        for sample in load::run(&arms, sends).await? {
            by_arm[sample.arm].push(sample);
        }
        for &e in &pending {
            entries[e].record(&mut by_arm, offer.scale);
        }
        // A model's report is its last round's judgement.
        pending.retain(|&e| {
            let entry = &entries[e];
            let judged = latency::judge(&models[entry.position], &entry.measured());
            reports.insert(entry.position, judged.report);
            judged.undecided
        });
    }
    // A timing verdict that failed in the shared rounds is confirmed in a
    // round of its own: the model, beside its last release where it has
    // one, with nothing else in flight, judged on that round's samples
    // only. The load of 599 other versions cannot fail a model's budget,
    // and a burst of stalls that happened to land on one version of a pair
    // in one model out of hundreds does not come back; a regression does.
    if arms.len() > 1 {
        for entry in &mut entries {
            let position = entry.position;
            let Some(failed) = reports.get(&position).and_then(latency::failed_timing) else {
                continue;
            };
            let lane = entry.confirmation_lane();
            let offer = Offer::new(std::slice::from_ref(&lane), capacity * UTILISATION);
            let sends = schedule::interleave(std::slice::from_ref(&lane), offer.scale);
            summary.requests += sends.len() as u64;
            let mut by_arm: Vec<Vec<Sample>> = vec![Vec::new(); arms.len()];
            for sample in load::run(&arms, sends).await? {
                by_arm[sample.arm].push(sample);
            }
            entry.retime(&mut by_arm, offer.scale, failed);
            let judged = latency::judge(&models[position], &entry.measured());
            reports.insert(position, judged.report);
        }
    }
    summary.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    for entry in &entries {
        if let Some(report) = reports.get_mut(&entry.position) {
            // Every model was timed for the whole run, side by side.
            report.duration_ms = summary.duration_ms;
        }
    }
    Ok((reports, Some(summary)))
}

/// One model in the fleet run: its arms and what they measured so far.
struct Entry {
    position: usize,
    candidate: usize,
    baseline: Option<(usize, Baseline)>,
    /// Why there is no baseline arm, for the report.
    no_baseline: Option<String>,
    rate: f64,
    /// The most requests per version (`contract.latency.requests`).
    cap: u64,
    candidate_samples: Vec<Sample>,
    baseline_samples: Vec<Sample>,
    offered_rate: f64,
    rounds: u32,
    /// The timing checks the shared rounds failed, once the model has been
    /// timed again in a round of its own (its samples then are that round's).
    retimed: Option<String>,
}

impl Entry {
    async fn new(
        position: usize,
        model: &ModelUnderTest,
        budget: &LatencyBudget,
        options: &FleetOptions,
        clients: &mut Clients,
        arms: &mut Vec<Arm>,
    ) -> Result<Self, Unreachable> {
        let client = clients.to(&model.client);
        let manifest = Arc::new(model.bundle.manifest().clone());
        let samples = model.samples.as_deref().unwrap_or_default();
        let bodies = bodies(&manifest, samples);
        let version = Some(manifest.model.version);
        arms.push(Arm::new(&client, version, Arc::clone(&manifest), &bodies)?);
        let candidate = arms.len() - 1;
        let baseline_target = options.baseline_target.as_ref().map(|c| clients.to(c));
        let found = baseline_arm(model, &client, baseline_target, &manifest, &bodies)
            .await?
            .map_err(|why| match &options.absent {
                Some(absent) => format!("{why}, and {absent}"),
                None => why,
            });
        let (baseline, no_baseline) = match found {
            Ok((arm, which)) => {
                arms.push(arm);
                (Some((arms.len() - 1, which)), None)
            }
            Err(why) => (None, Some(why)),
        };
        Ok(Self {
            position,
            candidate,
            baseline,
            no_baseline,
            rate: budget.rate_per_s,
            cap: budget.requests,
            candidate_samples: Vec::new(),
            baseline_samples: Vec::new(),
            offered_rate: budget.rate_per_s,
            rounds: 0,
            retimed: None,
        })
    }

    fn requested(&self) -> u64 {
        self.candidate_samples.len() as u64
    }

    fn next_lane(&self) -> Lane {
        let done = self.requested();
        Lane {
            candidate: self.candidate,
            baseline: self.baseline.as_ref().map(|(arm, _)| *arm),
            rate: self.rate,
            first: done,
            pairs: first_round_requests()
                .min(self.cap.saturating_sub(done))
                .max(1),
        }
    }

    /// As many requests as the shared rounds sent, so that the round of its
    /// own can tell as much as they did, on samples after those.
    fn confirmation_lane(&self) -> Lane {
        Lane {
            pairs: self.requested().max(1),
            ..self.next_lane()
        }
    }

    fn record(&mut self, by_arm: &mut [Vec<Sample>], scale: f64) {
        self.candidate_samples.append(&mut by_arm[self.candidate]);
        if let Some((arm, _)) = &self.baseline {
            self.baseline_samples.append(&mut by_arm[*arm]);
        }
        self.candidate_samples.sort_by_key(|s| s.index);
        self.baseline_samples.sort_by_key(|s| s.index);
        self.offered_rate = self.rate * scale;
        self.rounds += 1;
    }

    /// Keeps only the samples of a round of its own, after the shared
    /// rounds failed `failed`.
    fn retime(&mut self, by_arm: &mut [Vec<Sample>], scale: f64, failed: String) {
        self.candidate_samples.clear();
        self.baseline_samples.clear();
        self.record(by_arm, scale);
        self.retimed = Some(failed);
    }

    fn measured(&self) -> Measured<'_> {
        Measured {
            candidate: &self.candidate_samples,
            baseline: self
                .baseline
                .as_ref()
                .map(|(_, which)| (which.clone(), self.baseline_samples.as_slice())),
            no_baseline: self.no_baseline.as_deref(),
            rate_per_s: self.offered_rate,
            rounds: self.rounds,
            retimed: self.retimed.as_deref(),
            next_round: first_round_requests().min(self.cap.saturating_sub(self.requested())),
        }
    }
}

/// One HTTP client per endpoint, made on the run's own runtime, so that its
/// connections are driven there.
#[derive(Default)]
struct Clients(BTreeMap<String, Client>);

impl Clients {
    fn to(&mut self, endpoint: &Client) -> Client {
        self.0
            .entry(endpoint.base.clone())
            .or_insert_with(|| endpoint.fresh())
            .clone()
    }
}
