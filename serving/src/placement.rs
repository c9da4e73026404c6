//! Where a run of the main model goes: on the async worker that read the
//! request, queued with the requests that overlap it (`gather.rs`), or on a
//! blocking thread with a run slot (`admission.rs`). The one module that
//! decides, from what the version's runs have cost so far.

use std::time::Duration;

use crate::admission::ModelLoad;

/// Batches of at most this many rows, expected to take at most
/// [`INLINE_COST`], run on the async worker itself: they need no hand-off to
/// a blocking thread, and no run slot, which a busy server may not have.
const INLINE_ROWS: usize = 16;

/// The most a batch run on the async worker is expected to cost: its rows
/// times what a row of its model costs (`ModelLoad::expected`), which
/// overstates a batch of several rows, whose run costs mostly per run.
///
/// Well above what a single row of a fixture tree ensemble costs at any
/// rate: 20–40 µs when its requests come close together, and 100–400 µs
/// when they come far apart, each run finding the trees out of the cache
/// (benches/HISTORY.md, "What a cold run costs"). A threshold inside that
/// range would send a cheap model to the run slots whenever its traffic
/// thinned, and keep it there once traffic rose, where runs on the
/// blocking threads cost more: a busy machine would shed it. A run of a
/// millisecond or more gains little from the worker, and is worth a slot
/// that its deadline can stop.
pub(crate) const INLINE_COST: Duration = Duration::from_millis(1);

/// The most rows one gathered run takes: the cheapest run size per row on
/// one machine measured (a run of 16 rows cost more per row there), and a
/// fifth of a lone row's cost on another (benches/README.md).
pub(crate) const MAX_GATHERED_ROWS: usize = 8;

/// Whether a version's requests are gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gathering {
    /// Not yet known: its requests have not overlapped.
    Unchecked,
    /// Being checked on the samples.
    Checking,
    /// Its answers are the same gathered as alone.
    On,
    /// It is not gathered: its answers differ in runs of other sizes, or it
    /// has too few samples to tell.
    Off,
}

/// Where one batch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Queued with the version's other small requests, run by whichever
    /// request finds the model free.
    Gathered,
    /// On the async worker, on a session of its own; `unchecked` while the
    /// version's gathering is unchecked, so that the first overlap of two
    /// such runs starts the check.
    Inline { unchecked: bool },
    /// On a blocking thread, once a run slot is free.
    Blocking,
}

/// Where a batch of `rows` rows of the version whose runs cost `load`, and
/// whose gathering is `gathering`, runs.
pub(crate) fn place(load: &ModelLoad, rows: usize, gathering: Gathering) -> Placement {
    if !runs_inline(load, rows) {
        return Placement::Blocking;
    }
    match gathering {
        // A version whose runs may take a single row runs side by side on
        // its sessions: queued, it would run one row at a time.
        Gathering::On if row_cap(load) >= 2 => Placement::Gathered,
        Gathering::Unchecked => Placement::Inline { unchecked: true },
        Gathering::On | Gathering::Checking | Gathering::Off => {
            Placement::Inline { unchecked: false }
        }
    }
}

/// Whether a batch of `rows` rows of the model whose runs cost `load` runs
/// on the async worker rather than with a run slot.
pub(crate) fn runs_inline(load: &ModelLoad, rows: usize) -> bool {
    rows <= INLINE_ROWS && load.expected(rows) <= INLINE_COST
}

/// The most rows one gathered run takes: [`MAX_GATHERED_ROWS`], or fewer
/// where the version's runs so far say that a run of more would cost more
/// than a run on the async worker may; at least one.
pub(crate) fn row_cap(load: &ModelLoad) -> usize {
    (1..=MAX_GATHERED_ROWS)
        .rev()
        .find(|&rows| runs_inline(load, rows))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(rows: usize, took: Duration) -> ModelLoad {
        let load = ModelLoad::default();
        load.ran(rows, took);
        load
    }

    #[test]
    fn a_small_batch_runs_inline_unless_its_model_costs_a_millisecond() {
        // A fresh model, and one whose runs found its trees out of the cache.
        assert!(runs_inline(&ModelLoad::default(), 1));
        let cold = load(1, Duration::from_micros(400));
        assert!(runs_inline(&cold, 1));
        assert!(runs_inline(&cold, 2));
        assert!(!runs_inline(&cold, 3), "1.2 ms expected");
        let costly = load(1, Duration::from_micros(1500));
        assert!(!runs_inline(&costly, 1));
        assert!(!runs_inline(&ModelLoad::default(), INLINE_ROWS + 1));
    }

    #[test]
    fn a_run_takes_no_more_rows_than_may_run_on_the_async_worker() {
        let load = ModelLoad::default();
        assert_eq!(
            row_cap(&load),
            MAX_GATHERED_ROWS,
            "a version that has not run"
        );
        load.ran(1, Duration::from_micros(30));
        assert_eq!(row_cap(&load), MAX_GATHERED_ROWS);
        // Runs found their trees out of the cache: 300 µs a row.
        let cold = ModelLoad::default();
        cold.ran(1, Duration::from_micros(300));
        assert_eq!(row_cap(&cold), 3);
        let costly = ModelLoad::default();
        costly.ran(1, Duration::from_millis(2));
        assert_eq!(row_cap(&costly), 1);
    }

    #[test]
    fn a_batch_runs_gathered_only_when_checked_and_cheap_enough_for_two_rows() {
        let cheap = ModelLoad::default();
        cheap.ran(1, Duration::from_micros(30));
        assert_eq!(place(&cheap, 1, Gathering::On), Placement::Gathered);
        assert_eq!(
            place(&cheap, 1, Gathering::Unchecked),
            Placement::Inline { unchecked: true }
        );
        assert_eq!(
            place(&cheap, 1, Gathering::Off),
            Placement::Inline { unchecked: false }
        );
        assert_eq!(
            place(&cheap, INLINE_ROWS + 1, Gathering::On),
            Placement::Blocking
        );
        let single = ModelLoad::default();
        single.ran(1, Duration::from_micros(700));
        assert_eq!(
            place(&single, 1, Gathering::On),
            Placement::Inline { unchecked: false }
        );
        let costly = ModelLoad::default();
        costly.ran(1, Duration::from_millis(2));
        assert_eq!(place(&costly, 1, Gathering::On), Placement::Blocking);
    }
}
