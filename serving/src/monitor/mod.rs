//! What a served model sees once it is released: its inputs and outputs
//! drifting from the training data's (`reference.json`), and its live error
//! from the targets clients post back (`/feedback`).
//!
//! A request hands what it served to one monitor thread over a bounded
//! queue and goes on: nothing of the monitoring is on the request's path
//! but that hand-off, and when the queue is full the observation is
//! dropped and counted, never waited for. The thread keeps, per model
//! version, a sliding window of the last rows of each input and output, and
//! the predictions waiting for feedback (bounded by count and TTL). Feedback
//! goes through the same queue, after the observations of the requests it
//! answers, so a target posted as soon as its answer arrived finds it.

mod feedback;
mod ids;
mod scored;
mod version;
mod window;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use crate::error::ApiError;
use crate::model::Batch;
pub(crate) use feedback::Eviction;
use feedback::Pending;
use ids::RequestIds;
pub(crate) use version::MonitorReport;
pub use version::VersionMonitor;
pub(crate) use window::Drift;

/// How much the monitor keeps; see docs/serving.md, "Monitoring".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorLimits {
    /// Rows in each feature's sliding window, and in the live error's.
    pub window: usize,
    /// Predictions waiting for feedback, server-wide.
    pub pending: usize,
    /// How long a prediction waits for its feedback.
    pub ttl: Duration,
    /// Observations and feedback waiting for the monitor thread.
    pub queue: usize,
}

impl Default for MonitorLimits {
    fn default() -> Self {
        Self {
            window: 1000,
            pending: 100_000,
            ttl: Duration::from_secs(3600),
            queue: 4096,
        }
    }
}

/// What one answered request hands to the monitor.
#[derive(Debug)]
pub(crate) struct Observation {
    pub version: Arc<VersionMonitor>,
    pub model: String,
    /// The request id the answer carried, where a client can post feedback.
    pub id: Option<String>,
    pub batch: Arc<Batch>,
    /// Each output's values, as numbers (`Scoring::columns`).
    pub outputs: Vec<Vec<f64>>,
}

/// One observed target: a value for a one-row request, one per row for a
/// batch; a number, or a classifier's label as its label output carries it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum Target {
    Rows(Vec<serde_json::Value>),
    One(serde_json::Value),
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct FeedbackItem {
    pub id: String,
    pub target: Target,
}

/// What a feedback request joined.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct FeedbackReceipt {
    pub model_name: String,
    /// Request ids joined.
    pub joined: usize,
    /// Rows joined.
    pub rows: usize,
}

enum Message {
    Served(Observation),
    /// Answered once everything queued before it is in the windows.
    CaughtUp(tokio::sync::oneshot::Sender<()>),
    Feedback {
        model: String,
        items: Vec<FeedbackItem>,
        reply: tokio::sync::oneshot::Sender<Result<FeedbackReceipt, ApiError>>,
    },
}

/// What the monitor counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct MonitorCounters {
    /// Observations dropped because the queue was full.
    pub dropped: AtomicU64,
    pub evicted_capacity: AtomicU64,
    pub evicted_expired: AtomicU64,
    /// Rows joined with their targets.
    pub joined_rows: AtomicU64,
    /// Predictions waiting for feedback now.
    pub pending: AtomicU64,
}

/// The handle requests use: the queue to the monitor thread, and request
/// ids for requests that came without one.
#[derive(Debug)]
pub struct Monitor {
    queue: SyncSender<Message>,
    pub limits: MonitorLimits,
    pub counters: Arc<MonitorCounters>,
    ids: RequestIds,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Served(o) => write!(f, "Served({} rows)", o.batch.rows),
            Message::Feedback { items, .. } => write!(f, "Feedback({} ids)", items.len()),
            Message::CaughtUp(_) => f.write_str("CaughtUp"),
        }
    }
}

impl Monitor {
    /// Starts the monitor thread; it ends when the last handle is dropped.
    pub fn start(limits: MonitorLimits) -> Self {
        let (queue, receiver) = std::sync::mpsc::sync_channel(limits.queue.max(1));
        let counters = Arc::new(MonitorCounters::default());
        let thread_counters = Arc::clone(&counters);
        let spawned = std::thread::Builder::new()
            .name("preflight-monitor".to_owned())
            .spawn(move || run(&receiver, limits, &thread_counters));
        if let Err(error) = spawned {
            // Without the thread every observation is dropped and counted,
            // and feedback is refused: serving goes on.
            tracing::warn!(%error, "the monitor thread could not start");
        }
        Self {
            queue,
            limits,
            counters,
            ids: RequestIds::new(),
        }
    }

    /// Hands an answered request to the monitor, or drops it when the
    /// queue is full.
    pub(crate) fn observe(&self, observation: Observation) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(Message::Served(observation))
        {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Returns once every request answered before the call is in the
    /// windows (within a drain of the queue, about 2 ms), so that a report
    /// read next counts them all; at once when the queue is full.
    pub(crate) async fn caught_up(&self) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.queue.try_send(Message::CaughtUp(reply)).is_ok() {
            let _ = answer.await;
        }
    }

    /// Joins targets with the predictions served under their ids, all or
    /// none.
    pub(crate) async fn feedback(
        &self,
        model: String,
        items: Vec<FeedbackItem>,
    ) -> Result<FeedbackReceipt, ApiError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let busy = || {
            ApiError::Overloaded(
                "the monitor's queue is full: send the feedback again later".to_owned(),
            )
        };
        // Waiting for room keeps the feedback behind the observations it
        // answers; it never waits long, the thread drains the queue fast.
        let queue = self.queue.clone();
        let sent = tokio::task::spawn_blocking(move || {
            queue.send(Message::Feedback {
                model,
                items,
                reply,
            })
        })
        .await;
        match sent {
            Ok(Ok(())) => answer.await.unwrap_or_else(|_| Err(busy())),
            _ => Err(busy()),
        }
    }

    /// The request's id, or a new one.
    pub(crate) fn id(&self) -> String {
        self.ids.next()
    }
}

/// How long the monitor thread sleeps between drains of a busy queue.
const TICK: Duration = Duration::from_millis(2);

/// How often expired predictions are let go.
const EXPIRY: Duration = Duration::from_secs(1);

/// The monitor thread: observations into the windows and the pending
/// store, feedback joined from it.
///
/// Idle, it blocks on the queue. Once a message wakes it, it drains the
/// queue every [`TICK`] until a tick brings nothing: while requests keep
/// coming, a hand-off finds no thread waiting and costs no wake-up (a
/// wake-up per request cost more than the monitoring itself). Feedback is
/// answered within a tick.
fn run(receiver: &Receiver<Message>, limits: MonitorLimits, counters: &MonitorCounters) {
    let mut pending = Pending::new(limits.pending, limits.ttl);
    let mut expired_at = Instant::now();
    let mut evicted = |why: Eviction| {
        let counter = match why {
            Eviction::Capacity => &counters.evicted_capacity,
            Eviction::Expired => &counters.evicted_expired,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    };
    loop {
        let mut next = match receiver.recv_timeout(EXPIRY) {
            Ok(message) => Some(message),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        loop {
            let mut drained = false;
            while let Some(message) = next.take().or_else(|| receiver.try_recv().ok()) {
                handle(message, &mut pending, counters, &mut evicted);
                drained = true;
            }
            let now = Instant::now();
            if now.duration_since(expired_at) >= EXPIRY {
                pending.expire(now, &mut evicted);
                expired_at = now;
            }
            counters
                .pending
                .store(pending.len() as u64, Ordering::Relaxed);
            if !drained {
                break;
            }
            std::thread::sleep(TICK);
        }
    }
}

/// One message of the queue: an observation into its windows and the
/// pending store, feedback joined, or a caller told the thread caught up.
fn handle(
    message: Message,
    pending: &mut Pending<Arc<VersionMonitor>>,
    counters: &MonitorCounters,
    evicted: &mut impl FnMut(Eviction),
) {
    match message {
        Message::Served(o) => {
            o.version.observe(&o.batch, &o.outputs);
            let predicted = o.version.scoring.rows(&o.outputs);
            if let Some(id) = o.id.filter(|_| !predicted.is_empty()) {
                let key = (o.model, id);
                pending.insert(key, o.version, predicted, Instant::now(), evicted);
            }
        }
        Message::Feedback {
            model,
            items,
            reply,
        } => {
            let joined = join(pending, &model, items, counters);
            let _ = reply.send(joined);
        }
        Message::CaughtUp(reply) => {
            let _ = reply.send(());
        }
    }
}

/// Joins every item, or none when one cannot be: an id unknown or
/// expired, or targets that do not match the rows served.
fn join(
    pending: &mut Pending<Arc<VersionMonitor>>,
    model: &str,
    items: Vec<FeedbackItem>,
    counters: &MonitorCounters,
) -> Result<FeedbackReceipt, ApiError> {
    let now = Instant::now();
    let mut unknown = Vec::new();
    let mut mismatched = Vec::new();
    for item in &items {
        let key = (model.to_owned(), item.id.clone());
        match pending.get(&key, now) {
            None => unknown.push(format!("'{}'", item.id)),
            Some(waiting) => {
                let rows = waiting.predicted.len() / waiting.version.scoring.width();
                let given = match &item.target {
                    Target::One(_) => 1,
                    Target::Rows(v) => v.len(),
                };
                if given != rows {
                    mismatched.push(format!(
                        "'{}' answered {rows} rows and got {given} targets",
                        item.id
                    ));
                }
                let targets = match &item.target {
                    Target::One(t) => std::slice::from_ref(t),
                    Target::Rows(v) => v.as_slice(),
                };
                if let Some(why) = targets
                    .iter()
                    .find_map(|t| waiting.version.scoring.target(t).err())
                {
                    mismatched.push(format!("'{}': {why}", item.id));
                }
            }
        }
    }
    if !unknown.is_empty() {
        let shown: Vec<String> = unknown.iter().take(10).cloned().collect();
        let more = unknown.len().saturating_sub(shown.len());
        return Err(ApiError::NotFound(format!(
            "model '{model}': no prediction waits for request id {}{}: the id is unknown, or \
             older than the feedback TTL of {} s; nothing was joined",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
            pending.ttl().as_secs()
        )));
    }
    if !mismatched.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "model '{model}': {}; nothing was joined",
            mismatched.join("; ")
        )));
    }
    let mut rows = 0;
    let joined = items.len();
    for item in items {
        let key = (model.to_owned(), item.id);
        if let Some(waiting) = pending.remove(&key) {
            let given = match item.target {
                Target::One(t) => vec![t],
                Target::Rows(v) => v,
            };
            let scoring = &waiting.version.scoring;
            let targets: Vec<f64> = given
                .iter()
                .map(|t| scoring.target(t).unwrap_or(f64::NAN))
                .collect();
            waiting.version.join(&waiting.predicted, &targets);
            rows += targets.len();
        }
    }
    counters
        .joined_rows
        .fetch_add(rows as u64, Ordering::Relaxed);
    Ok(FeedbackReceipt {
        model_name: model.to_owned(),
        joined,
        rows,
    })
}
