//! The fleet's open-loop schedule: every selected model's requests, and its
//! last release's, interleaved in one timeline at the contract rates, scaled
//! down uniformly to what the target can take.

use std::time::Duration;

use super::stats::mix64;

/// How far apart the two requests of a pair are sent, at most. Close enough
/// that a stall of the machine (tens of milliseconds) lands on both; far
/// enough that the two rarely run at once and slow each other down, which
/// would pull their ratio towards 1 (at 250 µs, a pair of models of 4 and
/// 6 ms per call measured 1.25× instead of 1.34×).
const PAIR_GAP: f64 = 0.005;

/// One model's part of a round: `pairs` requests to each of its arms, from
/// sample index `first` on, at `rate` requests per second per arm.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lane {
    pub(crate) candidate: usize,
    pub(crate) baseline: Option<usize>,
    pub(crate) rate: f64,
    pub(crate) first: u64,
    pub(crate) pairs: u64,
}

impl Lane {
    fn arms(&self) -> f64 {
        if self.baseline.is_some() { 2.0 } else { 1.0 }
    }
}

/// One request of the schedule: when, to which arm, which sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Send {
    /// From the start of the round.
    pub(crate) at: Duration,
    pub(crate) arm: usize,
    pub(crate) index: u64,
}

/// What a round offers in total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Offer {
    /// The sum of the lanes' contract rates, requests per second.
    pub(crate) asked: f64,
    /// What the schedule sends, after scaling.
    pub(crate) offered: f64,
    /// `offered / asked`: 1 when the target takes every contract rate.
    pub(crate) scale: f64,
}

impl Offer {
    /// Scales the lanes' rates uniformly so that their sum stays within `capacity`.
    pub(crate) fn new(lanes: &[Lane], capacity: f64) -> Self {
        let asked: f64 = lanes.iter().map(|l| l.rate * l.arms()).sum();
        let scale = if asked > capacity && asked > 0.0 {
            capacity / asked
        } else {
            1.0
        };
        Self {
            asked,
            offered: asked * scale,
            scale,
        }
    }
}

/// Interleaves the lanes into one timeline, sorted by send time.
///
/// Within a lane, the two arms of pair `j` are `PAIR_GAP` apart (or half an
/// interval, if that is less), and
/// which goes first is a seeded coin toss per pair: neither version is always
/// the one that finds the other's request in the server, and no periodic
/// disturbance (a job every n requests, a timer) can line up with one
/// version, as it would with a strict ABAB order. Lanes start staggered over
/// one interval so that the fleet does not fire in step.
pub(crate) fn interleave(lanes: &[Lane], scale: f64) -> Vec<Send> {
    let mut sends = Vec::with_capacity(lanes.iter().map(|l| l.pairs as usize * 2).sum());
    for (k, lane) in lanes.iter().enumerate() {
        let interval = 1.0 / (lane.rate * scale);
        let offset = interval * k as f64 / lanes.len() as f64;
        for j in 0..lane.pairs {
            let t = offset + interval * j as f64;
            let index = lane.first + j;
            let candidate_first = mix64(((k as u64) << 32) ^ index) & 1 == 0;
            let (first, second) = match (lane.baseline, candidate_first) {
                (None, _) => (lane.candidate, None),
                (Some(b), true) => (lane.candidate, Some(b)),
                (Some(b), false) => (b, Some(lane.candidate)),
            };
            sends.push(Send {
                at: Duration::from_secs_f64(t),
                arm: first,
                index,
            });
            if let Some(arm) = second {
                sends.push(Send {
                    at: Duration::from_secs_f64(t + (interval / 2.0).min(PAIR_GAP)),
                    arm,
                    index,
                });
            }
        }
    }
    sends.sort_by_key(|s| s.at);
    sends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(candidate: usize, baseline: Option<usize>, rate: f64, pairs: u64) -> Lane {
        Lane {
            candidate,
            baseline,
            rate,
            first: 0,
            pairs,
        }
    }

    #[test]
    fn rates_are_scaled_uniformly_to_the_capacity() {
        let lanes = [lane(0, Some(1), 100.0, 10), lane(2, None, 200.0, 10)];
        let fits = Offer::new(&lanes, 1_000.0);
        assert_eq!((fits.asked, fits.offered, fits.scale), (400.0, 400.0, 1.0));
        let scaled = Offer::new(&lanes, 200.0);
        assert_eq!((scaled.offered, scaled.scale), (200.0, 0.5));
    }

    #[test]
    fn pairs_are_5_ms_apart_and_lanes_interleave() {
        let lanes = [lane(0, Some(1), 100.0, 3), lane(2, None, 100.0, 2)];
        let sends = interleave(&lanes, 1.0);
        let times = |arm: usize| -> Vec<(u64, u128)> {
            sends
                .iter()
                .filter(|s| s.arm == arm)
                .map(|s| (s.index, s.at.as_micros()))
                .collect()
        };
        // Pair j of lane 0 takes the slots 10j ms and 10j + 5 ms, in either order.
        for ((index, a), (_, b)) in times(0).into_iter().zip(times(1)) {
            let slots = (a.min(b), a.max(b));
            assert_eq!(
                slots,
                (
                    10_000 * u128::from(index),
                    10_000 * u128::from(index) + 5_000
                )
            );
        }
        // Lane 1 starts half an interval later: staggered over the lanes.
        assert_eq!(times(2), [(0, 5_000), (1, 15_000)]);
        assert!(
            sends.windows(2).all(|w| w[0].at <= w[1].at),
            "sorted by time"
        );
    }

    /// A disturbance every n-th request must not land on one version only.
    #[test]
    fn which_version_goes_first_is_not_periodic() {
        let lanes = [lane(0, Some(1), 100.0, 1000)];
        let sends = interleave(&lanes, 1.0);
        for period in [2, 4, 20] {
            let hit = |arm| {
                sends
                    .iter()
                    .step_by(period)
                    .filter(|s| s.arm == arm)
                    .count()
            };
            let (candidate, baseline) = (hit(0), hit(1));
            let share = candidate as f64 / (candidate + baseline) as f64;
            assert!(
                (0.4..=0.6).contains(&share),
                "every {period}th: {candidate} against {baseline}"
            );
        }
    }

    #[test]
    fn a_scaled_round_lasts_longer_by_the_scale() {
        let lanes = [lane(0, Some(1), 100.0, 100)];
        let last = |scale| {
            interleave(&lanes, scale)
                .last()
                .map(|s| s.at)
                .unwrap_or_default()
        };
        assert_eq!(last(1.0), Duration::from_micros(995_000));
        // Half an interval would be 10 ms; the pair stays 5 ms apart.
        assert_eq!(last(0.5), Duration::from_micros(1_985_000));
    }
}
