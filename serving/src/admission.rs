//! Admission control: how much work the server takes on at once, and what
//! it turns away rather than queue without end.
//!
//! Three bounds, each checked before a request's model runs:
//! - **rows in flight, server-wide**: rows decoded and not yet answered,
//!   which bounds the memory requests hold while they wait;
//! - **rows in flight per model version**: a share of the server's, so that
//!   one hot model cannot take every slot from the others;
//! - **model runs at once**: batches too costly to run on the async workers
//!   run on blocking threads, at most one per slot. A run that overran its
//!   deadline keeps its slot until ONNX Runtime stops it, so a burst of
//!   overruns cannot grow the threads without bound.
//!
//! A request waits for its rows and its slot at most `queue_wait` in all,
//! then is shed: 503 with `Retry-After`, counted as `shed`. A request over
//! its model's share is shed at once: waiting would not shrink the share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::model::Subject;

/// The default longest wait for admission, in milliseconds.
pub const QUEUE_WAIT_MS: u64 = 5;

/// The bounds, as flags set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Rows admitted and not yet answered, server-wide.
    pub max_inflight_rows: usize,
    /// Rows admitted and not yet answered, per model version.
    pub max_model_rows: usize,
    /// Model runs on blocking threads at once.
    pub max_runs: usize,
    /// The longest a request waits for its rows and its run slot.
    pub queue_wait: Duration,
}

impl AdmissionLimits {
    /// One run slot per core, 65,536 rows in flight (a few tens of MB of
    /// decoded requests), half of them for any one model, 5 ms of waiting: a request that
    /// cannot start by then is answered at once, for its client to retry
    /// elsewhere or later.
    pub fn for_cores(cores: usize) -> Self {
        let max_inflight_rows = 65_536;
        Self {
            max_inflight_rows,
            max_model_rows: max_inflight_rows / 2,
            max_runs: cores.max(1),
            queue_wait: Duration::from_millis(QUEUE_WAIT_MS),
        }
    }

    /// [`AdmissionLimits::for_cores`] with this machine's cores.
    pub fn for_this_machine() -> Self {
        Self::for_cores(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// The server's budgets.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    rows: Arc<Semaphore>,
    runs: Arc<Semaphore>,
    /// Requests waiting for a run slot now.
    waiting: AtomicUsize,
    stopped: Arc<AtomicU64>,
}

/// A model version's share of the budgets, and what its runs cost.
#[derive(Debug, Default)]
pub struct ModelLoad {
    inflight_rows: AtomicUsize,
    /// A moving average of the main model's run time per row, in
    /// nanoseconds of [`RunClock`]: 0 until it has run.
    nanos_per_row: AtomicU64,
}

/// What a run costs, as [`ModelLoad::ran`] takes it: the CPU time of the
/// thread that runs the model, where the platform keeps one, so that a run
/// the OS set aside while the machine was busy does not make the model look
/// costly (its next small batches would leave the async workers for the run
/// slots, and be shed when those are few). ONNX Runtime runs a model on the
/// calling thread, which with more intra-op threads works and spins beside
/// them. Wall time where there is no thread clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunClock(Duration);

impl RunClock {
    pub(crate) fn start() -> Self {
        Self(thread_time())
    }

    pub(crate) fn elapsed(&self) -> Duration {
        thread_time().saturating_sub(self.0)
    }
}

#[cfg(target_os = "linux")]
fn thread_time() -> Duration {
    use rustix::time::{ClockId, clock_gettime};
    let now = clock_gettime(ClockId::ThreadCPUTime);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    Duration::new(seconds, u32::try_from(now.tv_nsec).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
fn thread_time() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// Rows admitted for one request: released when dropped.
#[derive(Debug)]
pub struct Admitted<'a> {
    _share: Share<'a>,
    _permit: OwnedSemaphorePermit,
    /// Until when the request may still wait for a run slot.
    pub wait_until: Instant,
}

/// A run slot, held by the blocking thread that runs the model.
#[derive(Debug)]
pub struct RunSlot {
    _permit: OwnedSemaphorePermit,
    stopped: Arc<AtomicU64>,
}

impl RunSlot {
    /// Counts a run that a deadline stopped before its end.
    pub fn stopped(&self) {
        self.stopped.fetch_add(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// The server's budgets; a bound of 0 is taken as 1.
    pub fn new(limits: AdmissionLimits) -> Self {
        let limits = AdmissionLimits {
            max_inflight_rows: limits.max_inflight_rows.max(1),
            max_model_rows: limits.max_model_rows.max(1),
            max_runs: limits.max_runs.max(1),
            ..limits
        };
        Self {
            rows: Arc::new(Semaphore::new(limits.max_inflight_rows)),
            runs: Arc::new(Semaphore::new(limits.max_runs)),
            waiting: AtomicUsize::new(0),
            stopped: Arc::default(),
            limits,
        }
    }

    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// Admits `rows` for a request to the version of `model`, or says why
    /// not. A request larger than the whole budget waits for all of it.
    pub async fn admit<'a>(&self, model: &'a ModelLoad, rows: usize) -> Result<Admitted<'a>, Shed> {
        let started = Instant::now();
        let limit = self.limits.max_model_rows;
        // Counted from here, and released however this ends: refused, shed,
        // or dropped while it waits (its client gone).
        let share = Share::new(model, rows);
        // A request alone may always run, however large: the share bounds
        // what a model holds beside its other requests.
        if share.before > 0 && share.before + rows > limit {
            return Err(Shed(format!(
                "{} rows of this model are in flight, and {rows} more would pass its share of \
                 {limit}",
                share.before
            )));
        }
        let budget = self.limits.max_inflight_rows;
        let permits = u32::try_from(rows.clamp(1, budget)).unwrap_or(u32::MAX);
        let wait = self.limits.queue_wait;
        let acquired =
            tokio::time::timeout(wait, Arc::clone(&self.rows).acquire_many_owned(permits)).await;
        match acquired {
            Ok(Ok(permit)) => Ok(Admitted {
                _share: share,
                _permit: permit,
                wait_until: started + wait,
            }),
            _ => Err(Shed(format!(
                "the server is at its limit of {budget} rows in flight, and {rows} more did not \
                 fit within {} ms",
                wait.as_millis()
            ))),
        }
    }

    /// A slot to run a model on a blocking thread, waiting no later than
    /// `until`. A run expected to take `run` each is shed at once when the
    /// runs already waiting would keep it past `until`: it would wait for
    /// nothing, and hold its connection while it did.
    pub async fn run_slot(&self, until: Instant, run: Duration) -> Result<RunSlot, Shed> {
        if let Some(shed) = self.hopeless(until, run) {
            return Err(shed);
        }
        let wait = until.saturating_duration_since(Instant::now());
        // Counted while waiting, also when the request is dropped meanwhile
        // (its client gone).
        let waiting = Waiting::new(&self.waiting);
        let acquired = tokio::time::timeout(wait, Arc::clone(&self.runs).acquire_owned()).await;
        drop(waiting);
        match acquired {
            Ok(Ok(permit)) => Ok(RunSlot {
                _permit: permit,
                stopped: Arc::clone(&self.stopped),
            }),
            _ => Err(Shed(format!(
                "all {} model run slots stayed busy for {} ms",
                self.limits.max_runs,
                self.limits.queue_wait.as_millis()
            ))),
        }
    }

    /// Why a run expected to take `run` could not start before `until`,
    /// given the runs already waiting, each taken to cost as much; `None`
    /// when it may.
    pub fn hopeless(&self, until: Instant, run: Duration) -> Option<Shed> {
        let wait = until.saturating_duration_since(Instant::now());
        let slots = self.limits.max_runs;
        let ahead = self.waiting.load(Ordering::Acquire);
        let rounds = u32::try_from(ahead / slots).unwrap_or(u32::MAX);
        (rounds > 0 && run.saturating_mul(rounds) > wait).then(|| {
            Shed(format!(
                "{ahead} runs are waiting for the {slots} model run slots, longer than {} ms",
                self.limits.queue_wait.as_millis()
            ))
        })
    }

    /// Rows in flight now, server-wide.
    pub fn inflight_rows(&self) -> usize {
        self.limits.max_inflight_rows - self.rows.available_permits()
    }

    /// Model runs on blocking threads now.
    pub fn running(&self) -> usize {
        self.limits.max_runs - self.runs.available_permits()
    }

    /// Runs a deadline stopped before their end, since the start.
    pub fn stopped(&self) -> u64 {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// One request waiting for a run slot, counted until dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request's rows counted in its model's share until dropped.
#[derive(Debug)]
struct Share<'a> {
    model: &'a ModelLoad,
    rows: usize,
    /// The model's rows in flight before these.
    before: usize,
}

impl<'a> Share<'a> {
    fn new(model: &'a ModelLoad, rows: usize) -> Self {
        let before = model.inflight_rows.fetch_add(rows, Ordering::AcqRel);
        Self {
            model,
            rows,
            before,
        }
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        self.model
            .inflight_rows
            .fetch_sub(self.rows, Ordering::AcqRel);
    }
}

impl ModelLoad {
    /// The version's rows admitted and not yet answered.
    pub fn inflight_rows(&self) -> usize {
        self.inflight_rows.load(Ordering::Relaxed)
    }

    /// What `rows` rows are expected to cost, from the runs so far.
    pub fn expected(&self, rows: usize) -> Duration {
        let nanos = self.nanos_per_row.load(Ordering::Relaxed);
        Duration::from_nanos(nanos.saturating_mul(rows as u64))
    }

    /// Records a finished run of `rows` rows that took `took`.
    pub fn ran(&self, rows: usize, took: Duration) {
        let sample = u64::try_from(took.as_nanos() / rows.max(1) as u128).unwrap_or(u64::MAX);
        let old = self.nanos_per_row.load(Ordering::Relaxed);
        // An average over about the last eight runs; a lost update between
        // two racing runs only delays it.
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.nanos_per_row.store(new, Ordering::Relaxed);
    }
}

/// Why a request was turned away, without naming the model: the caller does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shed(pub String);

impl Shed {
    /// The client's answer: 503, with `Retry-After`.
    pub(crate) fn for_model(self, who: &Subject<'_>) -> ApiError {
        ApiError::Overloaded(format!("{who}: {}", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rows: usize, share: usize, runs: usize) -> AdmissionLimits {
        AdmissionLimits {
            max_inflight_rows: rows,
            max_model_rows: share,
            max_runs: runs,
            queue_wait: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn rows_beyond_the_server_budget_wait_then_are_shed() {
        let admission = Admission::new(limits(10, 10, 1));
        let (a, b) = (ModelLoad::default(), ModelLoad::default());
        let held = admission.admit(&a, 8).await.expect("8 of 10 rows");
        let shed = admission.admit(&b, 3).await.expect_err("3 more do not fit");
        assert!(shed.0.contains("limit of 10 rows"), "{}", shed.0);
        assert_eq!(admission.inflight_rows(), 8);
        // Nothing is left counted for the request turned away.
        assert_eq!(b.inflight_rows.load(Ordering::Relaxed), 0);
        drop(held);
        assert_eq!(admission.inflight_rows(), 0);
        admission.admit(&b, 3).await.expect("room again");
    }

    #[tokio::test]
    async fn a_model_over_its_share_is_shed_at_once_and_others_still_fit() {
        let admission = Admission::new(limits(100, 10, 1));
        let (hot, cold) = (ModelLoad::default(), ModelLoad::default());
        let _held = admission.admit(&hot, 6).await.expect("within the share");
        let shed = admission.admit(&hot, 6).await.expect_err("over the share");
        assert!(shed.0.contains("share of 10"), "{}", shed.0);
        admission.admit(&cold, 6).await.expect("another model fits");
    }

    #[tokio::test]
    async fn a_request_dropped_while_it_waits_leaves_nothing_counted() {
        let admission = Admission::new(AdmissionLimits {
            queue_wait: Duration::from_secs(60),
            ..limits(10, 100, 1)
        });
        let model = ModelLoad::default();
        let held = admission.admit(&model, 10).await.expect("all 10 rows");
        let slot = admission
            .run_slot(Instant::now(), Duration::ZERO)
            .await
            .expect("the slot");
        {
            // Both wait, then their client goes away.
            let rows = std::pin::pin!(admission.admit(&model, 5));
            let far = Instant::now() + Duration::from_secs(60);
            let run = std::pin::pin!(admission.run_slot(far, Duration::ZERO));
            let waited =
                tokio::time::timeout(Duration::from_millis(20), async { tokio::join!(rows, run) });
            assert!(waited.await.is_err(), "neither could have been admitted");
        }
        assert_eq!(model.inflight_rows.load(Ordering::Relaxed), 10);
        assert_eq!(admission.waiting.load(Ordering::Relaxed), 0);
        drop((held, slot));
        assert_eq!(model.inflight_rows.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_request_alone_may_be_larger_than_the_budgets() {
        let admission = Admission::new(limits(10, 5, 1));
        let model = ModelLoad::default();
        let held = admission.admit(&model, 1000).await.expect("alone, it runs");
        assert_eq!(admission.inflight_rows(), 10);
        drop(held);
        assert_eq!(model.inflight_rows.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn run_slots_are_waited_for_until_the_given_instant() {
        let admission = Admission::new(limits(10, 10, 1));
        let soon = || Instant::now() + Duration::from_millis(5);
        let slot = admission
            .run_slot(soon(), Duration::ZERO)
            .await
            .expect("the free slot");
        assert_eq!(admission.running(), 1);
        let until = soon();
        let shed = admission
            .run_slot(until, Duration::ZERO)
            .await
            .expect_err("busy slot");
        assert!(Instant::now() >= until);
        assert!(shed.0.contains("run slots stayed busy"), "{}", shed.0);
        slot.stopped();
        drop(slot);
        assert_eq!((admission.running(), admission.stopped()), (0, 1));
    }

    #[tokio::test]
    async fn a_run_that_could_not_start_in_time_is_shed_without_waiting() {
        let admission = Arc::new(Admission::new(limits(10, 10, 1)));
        let far = Instant::now() + Duration::from_secs(60);
        let _slot = admission.run_slot(far, Duration::ZERO).await.expect("free");
        // One request waits for the busy slot...
        let waiter = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move { admission.run_slot(far, Duration::ZERO).await.map(drop) }
        });
        while admission.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // ...so a run of 10 ms cannot start within 5 ms: shed at once.
        let until = Instant::now() + Duration::from_millis(5);
        let shed = admission.run_slot(until, Duration::from_millis(10)).await;
        assert!(Instant::now() < until, "it waited");
        let shed = shed.expect_err("shed");
        assert!(shed.0.contains("1 runs are waiting"), "{}", shed.0);
        waiter.abort();
    }

    #[test]
    fn the_cost_per_row_follows_the_runs() {
        let model = ModelLoad::default();
        assert_eq!(model.expected(100), Duration::ZERO);
        model.ran(10, Duration::from_micros(100));
        assert_eq!(model.expected(1), Duration::from_micros(10));
        for _ in 0..64 {
            model.ran(1, Duration::from_micros(50));
        }
        let expected = model.expected(1).as_micros();
        assert!((49..=50).contains(&expected), "{expected} µs");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_run_is_timed_by_its_threads_cpu_not_by_the_wall() {
        let clock = RunClock::start();
        std::thread::sleep(Duration::from_millis(50));
        let asleep = clock.elapsed();
        assert!(
            asleep < Duration::from_millis(10),
            "50 ms asleep cost {asleep:?}"
        );
        let busy = RunClock::start();
        let mut spins = 0u64;
        while busy.elapsed() < Duration::from_millis(2) {
            spins = spins.wrapping_add(1);
        }
        assert!(spins > 0);
    }
}
