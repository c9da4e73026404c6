//! Rollout on one server: a share of a model's default traffic sent to a
//! candidate version, answered by it (`canary`) or computed beside the
//! version serving and compared (`shadow`). See docs/serving.md, "Rollout".
//!
//! Which request goes where is decided by a counter, not at random: of each
//! 100 default requests the first `percent` go to the candidate, so a share
//! holds exactly over every hundred requests and a test can count on it.
//! Shadow work is never on the answer's path: it starts after the answer is
//! made, at most one batch at a time, and is shed first, whenever the
//! server is busy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use preflight_bundle::Tolerance;
use tokio::sync::Semaphore;

use crate::admission::Admission;
use crate::model::{Batch, TensorData};
use crate::served::{Main, Served};

/// How the candidate takes its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The candidate answers its share.
    Canary,
    /// The candidate computes its share on a copy; the version serving answers.
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Canary => "canary",
            Mode::Shadow => "shadow",
        }
    }
}

/// A model's route: its candidate, mode and share, and what it did.
#[derive(Debug)]
pub struct Route {
    pub candidate: u64,
    pub mode: Mode,
    /// Of each 100 default requests, how many go to the candidate.
    pub percent: u32,
    next: AtomicU64,
    /// Default requests sent to the candidate.
    pub routed: AtomicU64,
    pub shadow: ShadowFigures,
}

/// How the candidate's shadow answers compare with the answers served.
#[derive(Debug, Default)]
pub struct ShadowFigures {
    /// Rows the candidate computed in shadow.
    pub rows: AtomicU64,
    /// Rows where an output of the candidate is outside the candidate's
    /// parity tolerance of the answer served.
    pub divergent: AtomicU64,
    /// The largest |candidate − served| seen, as f64 bits.
    max_abs_bits: AtomicU64,
    /// Shadow runs not made: the server was busy, or a shadow run was going.
    pub shed: AtomicU64,
    /// Shadow runs that failed: the candidate's main model erred or is not
    /// loaded.
    pub failed: AtomicU64,
}

impl ShadowFigures {
    pub fn max_abs(&self) -> f64 {
        f64::from_bits(self.max_abs_bits.load(Ordering::Relaxed))
    }

    fn record_max(&self, value: f64) {
        let mut current = self.max_abs_bits.load(Ordering::Relaxed);
        while value > f64::from_bits(current) {
            match self.max_abs_bits.compare_exchange_weak(
                current,
                value.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
    }
}

impl Route {
    pub fn new(candidate: u64, mode: Mode, percent: u32) -> Self {
        Self {
            candidate,
            mode,
            percent: percent.min(100),
            next: AtomicU64::new(0),
            routed: AtomicU64::new(0),
            shadow: ShadowFigures::default(),
        }
    }

    /// Whether this default request goes to the candidate.
    pub fn takes(&self) -> bool {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let taken = n % 100 < u64::from(self.percent);
        if taken {
            self.routed.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }
}

/// A request whose candidate computes in shadow.
#[derive(Debug, Clone)]
pub struct Shadowing {
    pub candidate: Arc<Served>,
    pub route: Arc<Route>,
}

/// The shadow runs of the server: one at a time.
#[derive(Debug)]
pub struct Shadows {
    slot: Arc<Semaphore>,
}

impl Default for Shadows {
    fn default() -> Self {
        Self {
            slot: Arc::new(Semaphore::new(1)),
        }
    }
}

impl Shadows {
    /// Computes the candidate on `batch` after the answer, and compares it
    /// with `served` (each output's values as answered); shed when the
    /// server is busy or a shadow run is going.
    pub(crate) fn submit(
        &self,
        admission: &Admission,
        shadowing: Shadowing,
        batch: Arc<Batch>,
        served: Vec<Vec<f64>>,
    ) {
        let figures = &shadowing.route.shadow;
        let limits = admission.limits();
        let busy = admission.inflight_rows() * 2 > limits.max_inflight_rows
            || admission.running() >= limits.max_runs;
        let permit = (!busy).then(|| Arc::clone(&self.slot).try_acquire_owned().ok());
        let Some(Some(permit)) = permit else {
            figures.shed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Main::Ready(predictor) = &shadowing.candidate.main else {
            figures.failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let predictor = Arc::clone(predictor);
        tokio::spawn(async move {
            let run = tokio::task::spawn_blocking(move || predictor.predict(&batch, None)).await;
            drop(permit);
            let figures = &shadowing.route.shadow;
            match run {
                Ok(Ok(outputs)) => {
                    let scoring = &shadowing.candidate.monitor.scoring;
                    let outputs: Vec<Option<TensorData>> = outputs.into_iter().map(Some).collect();
                    let candidate = scoring.rows(&scoring.columns(&outputs));
                    let tolerance = shadowing
                        .candidate
                        .manifest
                        .contract
                        .parity
                        .unwrap_or(Tolerance::new(0.0, 0.0));
                    let served = scoring.rows(&served);
                    compare(figures, tolerance, scoring.width(), &candidate, &served);
                }
                _ => {
                    figures.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// Counts the rows where any scored value of the candidate (`Scoring::rows`,
/// `width` a row) is outside the tolerance of the answer served, and the
/// largest difference.
fn compare(
    figures: &ShadowFigures,
    tolerance: Tolerance,
    width: usize,
    candidate: &[f64],
    served: &[f64],
) {
    let rows = served.len() / width.max(1);
    let mut divergent = 0;
    let mut max_abs: f64 = 0.0;
    for (c, s) in candidate.chunks(width).zip(served.chunks(width)) {
        let mut off = false;
        for (&c, &s) in c.iter().zip(s) {
            let abs = (c - s).abs();
            if abs.is_finite() {
                max_abs = max_abs.max(abs);
            }
            off |= !tolerance.accepts(c, s);
        }
        divergent += u64::from(off);
    }
    figures.rows.fetch_add(rows as u64, Ordering::Relaxed);
    figures.divergent.fetch_add(divergent, Ordering::Relaxed);
    figures.record_max(max_abs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_exact_over_every_hundred_requests() {
        let route = Route::new(2, Mode::Canary, 30);
        let taken = (0..1000).filter(|_| route.takes()).count();
        assert_eq!(taken, 300);
        assert_eq!(route.routed.load(Ordering::Relaxed), 300);
        let none = Route::new(2, Mode::Shadow, 0);
        assert!((0..100).all(|_| !none.takes()));
    }

    #[test]
    fn divergence_is_counted_by_row_against_the_candidates_tolerance() {
        let figures = ShadowFigures::default();
        let tolerance = Tolerance::new(0.1, 0.0);
        compare(&figures, tolerance, 1, &[1.0, 2.05, 3.5], &[1.0, 2.0, 3.0]);
        assert_eq!(figures.rows.load(Ordering::Relaxed), 3);
        assert_eq!(figures.divergent.load(Ordering::Relaxed), 1);
        assert!((figures.max_abs() - 0.5).abs() < 1e-12);
        // A classifier's rows: a label's position and two probabilities; the
        // second row names another class.
        let classes = ShadowFigures::default();
        compare(
            &classes,
            tolerance,
            3,
            &[1.0, 0.2, 0.8, 0.0, 0.6, 0.4],
            &[1.0, 0.25, 0.75, 1.0, 0.45, 0.55],
        );
        assert_eq!(classes.rows.load(Ordering::Relaxed), 2);
        assert_eq!(classes.divergent.load(Ordering::Relaxed), 1);
    }
}
