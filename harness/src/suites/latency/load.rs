//! Sending the schedule: an open-loop generator, and the closed-loop probe
//! that measures what the target can take.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use preflight_bundle::Manifest;

use super::schedule::Send;
use crate::client::{Answer, Client, FallbackReason, Prepared, Unreachable};

/// One version of one model, as the fleet run sends to it.
#[derive(Debug)]
pub(crate) struct Arm {
    pub(crate) client: Client,
    /// The manifest the answers are read against.
    pub(crate) manifest: Arc<Manifest>,
    /// Single-row requests, made ready before the clock starts; request `i`
    /// sends request `i % len`.
    pub(crate) requests: Arc<[Prepared]>,
}

impl Arm {
    /// The arm of the manifest's model at `version` (`None`: the version
    /// `client`'s endpoint serves by default), sending `bodies`.
    pub(crate) fn new(
        client: &Client,
        version: Option<u64>,
        manifest: Arc<Manifest>,
        bodies: &[serde_json::Value],
    ) -> Result<Self, Unreachable> {
        let name = &manifest.model.name;
        let requests = bodies
            .iter()
            .map(|body| client.prepare(name, version, body));
        Ok(Self {
            client: client.clone(),
            requests: requests.collect::<Result<_, _>>()?,
            manifest,
        })
    }

    async fn send(&self, index: u64) -> Result<Answer, Unreachable> {
        let request = &self.requests[index as usize % self.requests.len()];
        self.client.send(request, &self.manifest, 1).await
    }
}

/// How one request of the schedule ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// The main model answered.
    Model,
    /// The fallback answered, for this reason.
    Fallback(FallbackReason),
    /// No usable answer: the status and error.
    Failed(String),
}

/// One timed request.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) arm: usize,
    pub(crate) index: u64,
    /// From the intended send time to the end of the answer.
    pub(crate) ms: f64,
    pub(crate) outcome: Outcome,
}

/// Sends the schedule open-loop and times every request from its intended
/// send time, so that a stall of the target or of the harness shows in the
/// latencies instead of slowing the load (no coordinated omission).
///
/// One thread keeps the timeline. tokio's timer wheel has a resolution of a
/// millisecond, more than a whole single-row request, so the generator sleeps
/// on the operating system's high-resolution timer instead, and hands each
/// request to the runtime when its time comes; it never spins.
pub(crate) async fn run(arms: &Arc<[Arm]>, sends: Vec<Send>) -> Result<Vec<Sample>, Unreachable> {
    let total = sends.len();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let generator = {
        let (arms, stop, handle) = (
            Arc::clone(arms),
            Arc::clone(&stop),
            tokio::runtime::Handle::current(),
        );
        std::thread::Builder::new()
            .name("preflight-load".to_owned())
            .spawn(move || {
                let start = Instant::now() + Duration::from_millis(20);
                for send in sends {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let intended = start + send.at;
                    if let Some(wait) = intended.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let (arms, tx) = (Arc::clone(&arms), tx.clone());
                    handle.spawn(async move {
                        let answer = arms[send.arm].send(send.index).await;
                        let ms = intended.elapsed().as_secs_f64() * 1000.0;
                        let _ = tx.send((send, ms, answer));
                    });
                }
            })
    };
    if let Err(e) = generator {
        return Err(Unreachable {
            url: "the load generator".to_owned(),
            reason: e.to_string(),
        });
    }
    let mut samples = Vec::with_capacity(total);
    while samples.len() < total {
        let Some((send, ms, answer)) = rx.recv().await else {
            break;
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(unreachable) => {
                stop.store(true, Ordering::Relaxed);
                return Err(unreachable);
            }
        };
        samples.push(Sample {
            arm: send.arm,
            index: send.index,
            ms,
            outcome: outcome(&answer),
        });
    }
    Ok(samples)
}

fn outcome(answer: &Answer) -> Outcome {
    match (&answer.fallback, answer.ok()) {
        (_, false) => Outcome::Failed(answer.describe()),
        (Some(reason), true) => Outcome::Fallback(reason.clone()),
        (None, true) => Outcome::Model,
    }
}

/// Requests in flight while probing.
const PROBE_CONCURRENCY: usize = 16;

/// Warms every arm up with `per_arm` requests, closed-loop, for at least
/// `at_least`, and returns the rate the target and the harness sustained
/// together, in requests per second. The warm-up opens connections and lets
/// each model make its sessions before anything is timed.
pub(crate) async fn probe(
    arms: &Arc<[Arm]>,
    per_arm: u64,
    at_least: Duration,
) -> Result<f64, Unreachable> {
    let items = arms.len() * per_arm as usize;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..PROBE_CONCURRENCY {
        let (arms, next) = (Arc::clone(arms), Arc::clone(&next));
        workers.spawn(async move {
            let mut done = 0_u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items && started.elapsed() >= at_least {
                    return Ok::<_, Unreachable>(done);
                }
                // Round-major: every arm once before any arm twice.
                let (arm, index) = (i % arms.len(), (i / arms.len()) as u64);
                arms[arm].send(index).await?;
                done += 1;
            }
        });
    }
    let mut done = 0;
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Ok(n)) => done += n,
            Ok(Err(unreachable)) => return Err(unreachable),
            Err(e) => {
                return Err(Unreachable {
                    url: "the probe".to_owned(),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}
