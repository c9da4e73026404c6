//! The rollout's steady traffic: default-route requests at a steady rate,
//! one sample each, every answer kept with when it was sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use preflight_bundle::Record;
use tokio::sync::Mutex;

use crate::client::{Answer, Client, Prepared, Unreachable};
use crate::suites::ModelUnderTest;

/// One answer of the steady traffic.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    pub(super) at: Instant,
    pub(super) sample: usize,
    pub(super) answer: Result<Answer, String>,
}

impl Sent {
    pub(super) fn version(&self) -> Option<&str> {
        self.answer.as_ref().ok()?.model_version.as_deref()
    }
}

/// Default-route requests at a steady rate until stopped, one sample each.
pub(super) struct Traffic {
    sent: Arc<Mutex<Vec<Sent>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    pub(super) fn start(
        model: &ModelUnderTest,
        samples: &[Record],
        rate: f64,
    ) -> Result<Self, Unreachable> {
        let manifest = model.bundle.manifest().clone();
        let client: Client = model.client.clone();
        let name = &manifest.model.name;
        let requests = samples.iter().map(|r| {
            let body = manifest.infer_request(&[r.inputs.as_slice()]);
            client.prepare(name, None, &body)
        });
        let requests: Vec<Prepared> = requests.collect::<Result<_, _>>()?;
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (sent, stop) = (Arc::clone(&sent), Arc::clone(&stop));
            async move {
                let period = Duration::from_secs_f64(1.0 / rate);
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let sample = i % requests.len();
                    i += 1;
                    let at = Instant::now();
                    let answer = client
                        .send(&requests[sample], &manifest, 1)
                        .await
                        .map_err(|e| e.to_string());
                    sent.lock().await.push(Sent { at, sample, answer });
                }
            }
        });
        Ok(Self { sent, stop, task })
    }

    pub(super) async fn count(&self) -> usize {
        self.sent.lock().await.len()
    }

    /// Waits until `n` more requests have been answered.
    pub(super) async fn wait(&self, n: usize) {
        let target = self.count().await + n;
        while self.count().await < target {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The answers from the `from`-th on.
    pub(super) async fn since(&self, from: usize) -> Vec<Sent> {
        self.sent.lock().await[from..].to_vec()
    }

    pub(super) async fn finish(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let sent = self.sent.lock().await;
        sent.clone()
    }
}
