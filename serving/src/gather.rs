//! Small requests to one model version that overlap, run together.
//!
//! Most of what ONNX Runtime spends on a run of a tree ensemble is per run,
//! not per row: a run walks every tree, and brings it into the cache, once
//! for all its rows (benches/HISTORY.md, "Gathered runs"). So once a
//! version's small requests overlap, they stop taking a session each: they
//! queue their rows, and the request running the model takes what queued,
//! up to [`MAX_GATHERED_ROWS`] rows and no more than may run on the async worker
//! ([`row_cap`]), as its next run and hands each request its rows of the
//! outputs. A request that finds no run in progress runs at once, so
//! a server that is not busy adds no wait.
//!
//! Gathering must not change an answer: a version is gathered only once its
//! answers were found the same, bit for bit, in runs of 2 to [`MAX_GATHERED_ROWS`]
//! rows as alone, on the bundle's samples ([`invariant`]). A tree ensemble
//! adds up the same trees in the same order for a row whatever the run
//! holds; ONNX-ML's `LinearRegressor` does not, and some of its rows come
//! out otherwise in the last bits. The check runs off the request path,
//! the first time two requests to the version overlap: a repository of
//! cold models pays nothing for it, and until it ends the version runs as
//! before.

use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use preflight_bundle::{Bundle, Manifest, Value};
use tokio::sync::oneshot;

use crate::admission::{ModelLoad, RunClock};
use crate::decode::decode_rows;
use crate::model::{BackendError, Batch, Predictor, TensorData};
use crate::placement::{Gathering, INLINE_COST, MAX_GATHERED_ROWS, row_cap};

/// The most runs a request makes for others before it hands the queue on
/// to a task of its own and goes to answer its client; fewer when those
/// runs are expected to cost [`INLINE_COST`] together, so that one pass
/// over the queue holds its async worker about as long as one batch run
/// there may.
const MAX_RUNS: usize = 4;

type Outputs = Result<Vec<TensorData>, BackendError>;

/// One version's gathering: its state, and its queue of waiting requests.
#[derive(Debug)]
pub struct Gather {
    /// The bundle's folder, whose samples the check runs.
    bundle: PathBuf,
    mode: AtomicU8,
    /// Requests running the model alone now, while the mode is unknown.
    alone: AtomicUsize,
    queue: Mutex<Vec<Waiting>>,
    /// Set while a task is running the queue.
    running: AtomicBool,
    /// Runs of the queue, and the requests they answered.
    runs: AtomicU64,
    requests: AtomicU64,
}

#[derive(Debug)]
struct Waiting {
    batch: Arc<Batch>,
    answer: oneshot::Sender<Outputs>,
}

impl Gather {
    /// The gathering of the version in the bundle folder `bundle`, not
    /// yet checked.
    pub fn new(bundle: PathBuf) -> Self {
        Self {
            bundle,
            mode: AtomicU8::new(Gathering::Unchecked as u8),
            alone: AtomicUsize::new(0),
            queue: Mutex::new(Vec::new()),
            running: AtomicBool::new(false),
            runs: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// Runs of the queue so far, and the requests they answered.
    pub fn runs(&self) -> (u64, u64) {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        (get(&self.runs), get(&self.requests))
    }

    pub fn mode(&self) -> Gathering {
        match self.mode.load(Ordering::Acquire) {
            0 => Gathering::Unchecked,
            1 => Gathering::Checking,
            2 => Gathering::On,
            _ => Gathering::Off,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Waiting>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The oldest waiting requests, up to `max_rows` rows (at least one
    /// request, however many rows it has).
    fn take(&self, max_rows: usize) -> Vec<Waiting> {
        let mut queue = self.lock();
        let mut rows = 0;
        let n = queue
            .iter()
            .take_while(|w| {
                rows += w.batch.rows;
                rows <= max_rows
            })
            .count()
            .max(queue.len().min(1));
        queue.drain(..n).collect()
    }
}

/// A request running the model alone while the mode is unknown, until
/// dropped.
pub(crate) struct RunningAlone<'a>(&'a Gather);

impl Drop for RunningAlone<'_> {
    fn drop(&mut self) {
        self.0.alone.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Notes a request about to run `version`'s model alone while its mode is
/// unknown; the first time two overlap, starts the check on a blocking
/// thread.
pub(crate) fn running_alone<'a, V: Checked>(
    version: &'a Arc<V>,
    predictor: &Arc<dyn Predictor>,
) -> RunningAlone<'a> {
    let gather = version.gather();
    let overlapping = gather.alone.fetch_add(1, Ordering::AcqRel) > 0;
    let (unchecked, checking) = (Gathering::Unchecked as u8, Gathering::Checking as u8);
    if overlapping
        && (gather.mode)
            .compare_exchange(unchecked, checking, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        let (version, predictor) = (Arc::clone(version), Arc::clone(predictor));
        tokio::task::spawn_blocking(move || check(version.as_ref(), predictor.as_ref()));
    }
    RunningAlone(gather)
}

/// Decides the mode of `version`, logging why.
fn check<V: Checked>(version: &V, predictor: &dyn Predictor) {
    let (gather, manifest) = (version.gather(), version.manifest());
    let checked = samples(&gather.bundle, manifest).and_then(|samples| {
        match invariant(predictor, &samples) {
            Ok(None) => Ok(()),
            Ok(Some(row)) => Err(format!(
                "sample row {row}'s answer differs in a run with others from alone"
            )),
            Err(error) => Err(format!("the check could not run: {error}")),
        }
    });
    let (model, version) = (&manifest.model.name, manifest.model.version);
    let mode = match checked {
        Ok(()) => {
            tracing::info!(
                model,
                version,
                "overlapping requests run together: the samples' answers are the same in runs \
                    of 2 to {MAX_GATHERED_ROWS} rows as alone"
            );
            Gathering::On
        }
        Err(reason) => {
            tracing::info!(model, version, %reason, "overlapping requests run apart");
            Gathering::Off
        }
    };
    gather.mode.store(mode as u8, Ordering::Release);
}

/// [`MAX_GATHERED_ROWS`] of the bundle's samples, or why there are not two of them
/// to check with. Rows with a missing value come first, up to half of
/// them: a model may take another path for a missing value, and the check
/// must see it.
fn samples(bundle: &Path, manifest: &Manifest) -> Result<Batch, String> {
    let samples = Bundle::open(bundle)
        .and_then(|b| b.samples())
        .map_err(|e| format!("its samples cannot be read: {e}"))?
        .unwrap_or_default();
    if samples.len() < 2 {
        return Err("its bundle has fewer than two samples to check with".to_owned());
    }
    let rows = checked_rows(samples.iter().map(|r| &r.inputs[..]));
    decode_rows(manifest, &rows).map_err(|e| format!("its samples do not decode: {e}"))
}

/// Of `rows`, in their order, up to [`MAX_GATHERED_ROWS`]: first up to half of them
/// with a missing value, then the others.
fn checked_rows<'a>(rows: impl Iterator<Item = &'a [Value]>) -> Vec<&'a [Value]> {
    let (missing, full): (Vec<_>, Vec<_>) = rows.partition(|r| r.iter().any(Value::is_null));
    let half = MAX_GATHERED_ROWS / 2;
    let first = missing.iter().take(half);
    let rest = full.iter().chain(missing.iter().skip(half));
    first.chain(rest).take(MAX_GATHERED_ROWS).copied().collect()
}

/// The first row of `samples` whose answer differs, bit for bit, in some
/// run of 2 to [`MAX_GATHERED_ROWS`] rows from alone; `None` where none does. Each
/// size is tried with the first rows and with the last, so that rows are
/// seen in more than one place of a run.
pub(crate) fn invariant(
    predictor: &dyn Predictor,
    samples: &Batch,
) -> Result<Option<usize>, BackendError> {
    let n = samples.rows.min(MAX_GATHERED_ROWS);
    let alone = (0..n)
        .map(|row| predictor.predict(&samples.slice(row..row + 1), None))
        .collect::<Result<Vec<_>, _>>()?;
    for size in 2..=n {
        for first in [0, n - size] {
            let together = predictor.predict(&samples.slice(first..first + size), None)?;
            for (at, own) in alone[first..first + size].iter().enumerate() {
                let same = together
                    .iter()
                    .zip(own)
                    .all(|(all, own)| rows_of(all, size, at..at + 1).same_bits(own));
                if !same || together.len() != own.len() {
                    return Ok(Some(first + at));
                }
            }
        }
    }
    Ok(None)
}

/// What running a version's queue needs of it: the queue, and the load
/// its runs' costs go to.
pub(crate) trait Queued: Send + Sync + 'static {
    fn gather(&self) -> &Gather;
    fn load(&self) -> &ModelLoad;
}

/// What the check of a version's answers needs besides: the manifest its
/// samples are decoded with.
pub(crate) trait Checked: Queued {
    fn manifest(&self) -> &Manifest;
}

/// The outputs of `batch`, run with the requests that overlap it: queued,
/// then run by this request or by the one running the queue.
pub(crate) async fn predict<V: Queued>(
    version: &Arc<V>,
    predictor: &Arc<dyn Predictor>,
    batch: Arc<Batch>,
) -> Outputs {
    let (answer, answered) = oneshot::channel();
    version.gather().lock().push(Waiting { batch, answer });
    drain(version, predictor);
    answered.await.unwrap_or_else(|_| {
        Err(BackendError::Run(
            "the gathered run ended without an answer".to_owned(),
        ))
    })
}

/// Runs the queue unless another task is running it. After [`MAX_RUNS`]
/// runs it hands the rest to a task of its own, so that no request waits
/// long for its answer to leave. A request that queues while the runner
/// finishes is seen: the flag is cleared before the queue is looked at
/// again.
fn drain<V: Queued>(version: &Arc<V>, predictor: &Arc<dyn Predictor>) {
    let gather = version.gather();
    while gather
        .running
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        if !run_queue(version.as_ref(), predictor.as_ref()) {
            let (version, predictor) = (Arc::clone(version), Arc::clone(predictor));
            tokio::spawn(async move {
                while !run_queue(version.as_ref(), predictor.as_ref()) {
                    tokio::task::yield_now().await;
                }
                release(&version, &predictor);
            });
            return;
        }
        gather.running.store(false, Ordering::Release);
        if gather.lock().is_empty() {
            return;
        }
    }
}

/// After the queue's own task has emptied it: the flag cleared, and the
/// queue run again if a request came meanwhile.
fn release<V: Queued>(version: &Arc<V>, predictor: &Arc<dyn Predictor>) {
    version.gather().running.store(false, Ordering::Release);
    if !version.gather().lock().is_empty() {
        drain(version, predictor);
    }
}

/// Up to [`MAX_RUNS`] runs of the queue, and no more once they are
/// expected to have cost [`INLINE_COST`]; `true` when it was emptied.
fn run_queue<V: Queued>(version: &V, predictor: &dyn Predictor) -> bool {
    let load = version.load();
    let mut expected = Duration::ZERO;
    for _ in 0..MAX_RUNS {
        if expected >= INLINE_COST {
            break;
        }
        let taken = version.gather().take(row_cap(load));
        if taken.is_empty() {
            return true;
        }
        let rows = taken.iter().map(|w| w.batch.rows).sum();
        expected += load.expected(rows);
        run(version.gather(), load, predictor, taken);
    }
    version.gather().lock().is_empty()
}

/// One run of `taken`, each request answered with its rows.
fn run(gather: &Gather, load: &ModelLoad, predictor: &dyn Predictor, mut taken: Vec<Waiting>) {
    let clock = RunClock::start();
    gather.runs.fetch_add(1, Ordering::Relaxed);
    gather
        .requests
        .fetch_add(taken.len() as u64, Ordering::Relaxed);
    if taken.len() == 1
        && let Some(one) = taken.pop()
    {
        let outputs = guarded(predictor, &one.batch);
        load.ran(one.batch.rows, clock.elapsed());
        let _ = one.answer.send(outputs);
        return;
    }
    let Some(together) = Batch::concat(taken.iter().map(|w| w.batch.as_ref())) else {
        for waiting in taken {
            let mismatch = "the gathered requests' columns differ".to_owned();
            let _ = waiting.answer.send(Err(BackendError::Run(mismatch)));
        }
        return;
    };
    let outputs = guarded(predictor, &together);
    load.ran(together.rows, clock.elapsed());
    let mut first = 0;
    for waiting in taken {
        let rows = first..first + waiting.batch.rows;
        first = rows.end;
        let answer = match &outputs {
            Ok(outputs) => Ok(outputs
                .iter()
                .map(|o| rows_of(o, together.rows, rows.clone()))
                .collect()),
            Err(error) => Err(error.clone()),
        };
        let _ = waiting.answer.send(answer);
    }
}

/// The run's outputs; a panic in it is an error of the run, which each of
/// its requests' fallback answers, rather than the end of the task running
/// the queue with the queue still claimed.
fn guarded(predictor: &dyn Predictor, batch: &Batch) -> Outputs {
    std::panic::catch_unwind(AssertUnwindSafe(|| predictor.predict(batch, None)))
        .unwrap_or_else(|_| Err(BackendError::Run("the model's run panicked".to_owned())))
}

/// Rows `rows` of an output of `total` rows.
fn rows_of(output: &TensorData, total: usize, rows: Range<usize>) -> TensorData {
    let width = output.len() / total.max(1);
    output.slice(rows.start * width..rows.end * width)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twice the first column, plus `per_run` times the run's rows: an
    /// answer that depends on what else the run holds unless `per_run` is 0.
    struct Doubling {
        per_run: f32,
    }

    impl Predictor for Doubling {
        fn predict(&self, batch: &Batch, _: Option<&crate::model::Stop>) -> Outputs {
            let TensorData::F32(x) = &batch.columns[0] else {
                return Err(BackendError::Run("not FP32".to_owned()));
            };
            let extra = self.per_run * batch.rows as f32;
            Ok(vec![TensorData::F32(
                x.iter().map(|v| v * 2.0 + extra).collect(),
            )])
        }
    }

    /// A model whose run panics.
    struct Panicking;

    impl Predictor for Panicking {
        fn predict(&self, _: &Batch, _: Option<&crate::model::Stop>) -> Outputs {
            panic!("a bug in the runtime")
        }
    }

    fn rows(values: &[f32]) -> Batch {
        Batch {
            rows: values.len(),
            columns: vec![TensorData::F32(values.to_vec())],
        }
    }

    /// Queues `batch` as a request would.
    fn push(gather: &Gather, batch: Batch) -> oneshot::Receiver<Outputs> {
        let (answer, answered) = oneshot::channel();
        let batch = Arc::new(batch);
        gather.lock().push(Waiting { batch, answer });
        answered
    }

    /// Queues requests of `sizes` rows, the values of each a hundred apart.
    fn queue(gather: &Gather, sizes: &[usize]) -> Vec<oneshot::Receiver<Outputs>> {
        let mut next = 0.0;
        sizes
            .iter()
            .map(|&n| {
                let values: Vec<f32> = (0..n).map(|i| next + i as f32).collect();
                next += 100.0;
                push(gather, rows(&values))
            })
            .collect()
    }

    #[test]
    fn the_check_finds_the_first_row_whose_answer_depends_on_the_run() {
        let samples = rows(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        let same = Doubling { per_run: 0.0 };
        assert_eq!(invariant(&same, &samples), Ok(None));
        let differs = Doubling { per_run: 1e-3 };
        assert_eq!(invariant(&differs, &samples), Ok(Some(0)));
    }

    #[test]
    fn the_check_takes_rows_with_a_missing_value_first_up_to_half() {
        let (null, one) = (Value::Null, Value::Float(1.0));
        let with = [null.clone()];
        let without = [one];
        let some: Vec<&[Value]> = vec![&without, &without, &with, &without, &with];
        let picked = checked_rows(some.into_iter());
        let missing: Vec<bool> = picked.iter().map(|r| r[0].is_null()).collect();
        assert_eq!(missing, [true, true, false, false, false]);

        let many: Vec<&[Value]> = std::iter::repeat_n(&with[..], 10)
            .chain(std::iter::repeat_n(&without[..], 10))
            .collect();
        let picked = checked_rows(many.into_iter());
        let missing = picked.iter().filter(|r| r[0].is_null()).count();
        assert_eq!(
            (picked.len(), missing),
            (MAX_GATHERED_ROWS, MAX_GATHERED_ROWS / 2)
        );

        let only_missing: Vec<&[Value]> = vec![&with; 10];
        assert_eq!(
            checked_rows(only_missing.into_iter()).len(),
            MAX_GATHERED_ROWS
        );
    }

    #[test]
    fn a_run_takes_whole_requests_up_to_the_row_cap_and_at_least_one() {
        let gather = Gather::new(PathBuf::new());
        let _answers = queue(&gather, &[3, 4, 2, 9, 1]);
        let sizes =
            |taken: Vec<Waiting>| -> Vec<usize> { taken.iter().map(|w| w.batch.rows).collect() };
        assert_eq!(sizes(gather.take(MAX_GATHERED_ROWS)), [3, 4]);
        assert_eq!(sizes(gather.take(MAX_GATHERED_ROWS)), [2]);
        assert_eq!(sizes(gather.take(MAX_GATHERED_ROWS)), [9]);
        assert_eq!(sizes(gather.take(MAX_GATHERED_ROWS)), [1]);
        assert!(gather.take(MAX_GATHERED_ROWS).is_empty());
    }

    #[test]
    fn each_request_gets_its_own_rows_of_a_gathered_run() {
        let gather = Gather::new(PathBuf::new());
        let predictor = Doubling { per_run: 0.0 };
        let answers = queue(&gather, &[1, 3, 2]);
        let taken = gather.take(MAX_GATHERED_ROWS);
        run(&gather, &ModelLoad::default(), &predictor, taken);
        let expected = [vec![0.0], vec![200.0, 202.0, 204.0], vec![400.0, 402.0]];
        for (mut answered, expected) in answers.into_iter().zip(expected) {
            let outputs = answered.try_recv().expect("answered").expect("ran");
            assert_eq!(outputs, [TensorData::F32(expected)]);
        }
        assert_eq!(gather.runs(), (1, 3));
    }

    #[test]
    fn a_failed_run_fails_every_request_in_it() {
        let gather = Gather::new(PathBuf::new());
        let answers: Vec<_> = (0..2)
            .map(|i| {
                let batch = Batch {
                    rows: 1,
                    columns: vec![TensorData::I64(vec![i])],
                };
                push(&gather, batch)
            })
            .collect();
        let taken = gather.take(MAX_GATHERED_ROWS);
        run(
            &gather,
            &ModelLoad::default(),
            &Doubling { per_run: 0.0 },
            taken,
        );
        for mut answered in answers {
            let failed = answered.try_recv().expect("answered");
            assert_eq!(failed, Err(BackendError::Run("not FP32".to_owned())));
        }
    }

    #[test]
    fn a_run_that_panics_fails_each_of_its_requests() {
        let gather = Gather::new(PathBuf::new());
        let answers = queue(&gather, &[1, 2]);
        let taken = gather.take(MAX_GATHERED_ROWS);
        run(&gather, &ModelLoad::default(), &Panicking, taken);
        for mut answered in answers {
            let failed = answered.try_recv().expect("answered");
            let panicked = BackendError::Run("the model's run panicked".to_owned());
            assert_eq!(failed, Err(panicked));
        }
    }

    /// A version with nothing but a queue.
    struct Bare {
        gather: Gather,
        load: ModelLoad,
    }

    impl Queued for Bare {
        fn gather(&self) -> &Gather {
            &self.gather
        }

        fn load(&self) -> &ModelLoad {
            &self.load
        }
    }

    #[test]
    fn a_pass_over_the_queue_stops_once_its_runs_are_expected_to_cost_a_batch() {
        let version = Bare {
            gather: Gather::new(PathBuf::new()),
            load: ModelLoad::default(),
        };
        // 600 µs a row: one row a run, and a second run brings the pass's
        // expected cost past a millisecond (the runs themselves take
        // microseconds, which lowers the average only by an eighth a run).
        version.load.ran(1, Duration::from_micros(600));
        let _answers = queue(&version.gather, &[1; MAX_RUNS + 2]);
        assert!(!run_queue(&version, &Doubling { per_run: 0.0 }));
        assert_eq!(version.gather.runs(), (2, 2));
    }

    #[tokio::test]
    async fn a_long_queue_is_handed_on_to_a_task_of_its_own_and_all_answered() {
        let version = Arc::new(Bare {
            gather: Gather::new(PathBuf::new()),
            load: ModelLoad::default(),
        });
        let predictor: Arc<dyn Predictor> = Arc::new(Doubling { per_run: 0.0 });
        // One full run each: two more than a request makes for others.
        let answers = queue(&version.gather, &[MAX_GATHERED_ROWS; MAX_RUNS + 2]);
        drain(&version, &predictor);
        let handed_on = MAX_RUNS as u64;
        assert_eq!(version.gather.runs(), (handed_on, handed_on));
        assert!(version.gather.running.load(Ordering::Acquire));
        for (i, answered) in answers.into_iter().enumerate() {
            let answered = tokio::time::timeout(Duration::from_secs(10), answered);
            let outputs = answered
                .await
                .expect("in time")
                .expect("answered")
                .expect("ran");
            let TensorData::F32(values) = &outputs[0] else {
                panic!("FP32 out: {outputs:?}");
            };
            assert_eq!(values[0], 200.0 * i as f32, "request {i}");
        }
        assert_eq!(version.gather.runs().0, handed_on + 2);
        assert!(!version.gather.running.load(Ordering::Acquire));
    }
}
