//! Each served version's counters, and the unmatched requests': atomics
//! that a request updates without taking a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::connections::Connections;
use crate::model::{FallbackReason, Outcome};

/// Upper bounds of the latency histogram, in seconds: from 100 µs, below a
/// typical request's time, to 2.5 s.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// One model version's counters, or the unmatched requests'.
#[derive(Debug, Default)]
pub struct Counters {
    requests: [AtomicU64; Outcome::ALL.len()],
    fallbacks: [AtomicU64; FallbackReason::ALL.len()],
    rows: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_micros: AtomicU64,
    count: AtomicU64,
}

impl Counters {
    /// Records one inference request.
    pub fn record(
        &self,
        outcome: Outcome,
        rows: usize,
        fallback: Option<FallbackReason>,
        latency: Duration,
    ) {
        let add = |counter: &AtomicU64, n: u64| counter.fetch_add(n, Ordering::Relaxed);
        add(&self.requests[outcome as usize], 1);
        if let Some(reason) = fallback {
            add(&self.fallbacks[reason as usize], 1);
        }
        add(&self.rows, rows as u64);
        // The count before the buckets, which a scrape reads first: no
        // bucket is ever seen above the `+Inf` one.
        add(&self.count, 1);
        let seconds = latency.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                add(bucket, 1);
            }
        }
        add(
            &self.latency_micros,
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        );
    }

    /// Rows of the requests recorded.
    pub(super) fn rows(&self) -> u64 {
        Self::get(&self.rows)
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Requests by outcome label.
    pub(super) fn requests(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Outcome::ALL
            .into_iter()
            .map(|o| (o.as_str(), Self::get(&self.requests[o as usize])))
    }

    /// Fallback answers by reason label.
    pub(super) fn fallbacks(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        FallbackReason::ALL
            .into_iter()
            .map(|r| (r.as_str(), Self::get(&self.fallbacks[r as usize])))
    }

    /// The latency histogram: its sum in seconds, its count, and the
    /// requests in each bucket alone (`+Inf` last), as OpenMetrics
    /// encoders take them.
    pub(super) fn histogram(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let count = Self::get(&self.count);
        let mut below = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
        for (bound, cumulative) in BUCKETS.iter().zip(&self.buckets) {
            // Never above the count, read first: the count is recorded first.
            let cumulative = Self::get(cumulative).min(count);
            buckets.push((*bound, cumulative.saturating_sub(below)));
            below = below.max(cumulative);
        }
        buckets.push((f64::MAX, count.saturating_sub(below)));
        let seconds = Self::get(&self.latency_micros) as f64 / 1e6;
        (seconds, count, buckets)
    }
}

/// The server's metrics: the registry's versions carry their own counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests for a model or version that is not loaded.
    pub unmatched: Counters,
    /// Connections and requests that ended without a normal answer; shared
    /// with the accept loop.
    pub connections: std::sync::Arc<Connections>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_gives_each_bucket_its_own_requests() {
        let c = Counters::default();
        for micros in [50, 80, 300, 3_000_000] {
            c.record(Outcome::Ok, 1, None, Duration::from_micros(micros));
        }
        let (sum, count, buckets) = c.histogram();
        assert_eq!(count, 4);
        assert!((sum - 3.00043).abs() < 1e-9);
        assert_eq!(buckets[0], (0.0001, 2));
        assert_eq!(buckets[2], (0.0005, 1));
        assert_eq!(buckets.last(), Some(&(f64::MAX, 1)));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 4);
    }
}
