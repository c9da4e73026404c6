//! Service metrics in the Prometheus text format: requests, rows, fallbacks
//! and latency, per model and version.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default)]
pub struct Metrics {
    models: Mutex<BTreeMap<(String, String), ModelCounters>>,
}

#[derive(Debug, Default)]
struct ModelCounters {
    requests: BTreeMap<&'static str, u64>,
    fallbacks: BTreeMap<&'static str, u64>,
    rows: u64,
    buckets: [u64; BUCKETS.len()],
    latency_sum: f64,
    latency_count: u64,
}

impl Metrics {
    /// Records one inference request.
    pub fn record(
        &self,
        model: &str,
        version: &str,
        outcome: &'static str,
        rows: usize,
        fallback: Option<&'static str>,
        latency: Duration,
    ) {
        let Ok(mut models) = self.models.lock() else {
            return;
        };
        let counters = models
            .entry((model.to_owned(), version.to_owned()))
            .or_default();
        *counters.requests.entry(outcome).or_default() += 1;
        if let Some(reason) = fallback {
            *counters.fallbacks.entry(reason).or_default() += 1;
        }
        counters.rows += rows as u64;
        let seconds = latency.as_secs_f64();
        for (bucket, bound) in counters.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        counters.latency_sum += seconds;
        counters.latency_count += 1;
    }

    /// The Prometheus text exposition of everything recorded, plus the given gauges.
    pub fn render(&self, models_by_state: &BTreeMap<&'static str, usize>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP preflight_models Model versions loaded, by state.\n# TYPE preflight_models gauge"
        );
        for (state, n) in models_by_state {
            let _ = writeln!(out, "preflight_models{{state=\"{state}\"}} {n}");
        }
        let Ok(models) = self.models.lock() else {
            return out;
        };
        let _ = writeln!(
            out,
            "# HELP preflight_requests_total Inference requests, by outcome.\n# TYPE preflight_requests_total counter"
        );
        for ((model, version), c) in models.iter() {
            for (outcome, n) in &c.requests {
                let _ = writeln!(
                    out,
                    "preflight_requests_total{{model=\"{model}\",version=\"{version}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP preflight_rows_total Rows predicted.\n# TYPE preflight_rows_total counter"
        );
        for ((model, version), c) in models.iter() {
            let _ = writeln!(
                out,
                "preflight_rows_total{{model=\"{model}\",version=\"{version}\"}} {}",
                c.rows
            );
        }
        let _ = writeln!(
            out,
            "# HELP preflight_fallback_total Requests answered by the fast fallback, by reason.\n# TYPE preflight_fallback_total counter"
        );
        for ((model, version), c) in models.iter() {
            for (reason, n) in &c.fallbacks {
                let _ = writeln!(
                    out,
                    "preflight_fallback_total{{model=\"{model}\",version=\"{version}\",reason=\"{reason}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP preflight_request_duration_seconds Inference request latency.\n# TYPE preflight_request_duration_seconds histogram"
        );
        for ((model, version), c) in models.iter() {
            let labels = format!("model=\"{model}\",version=\"{version}\"");
            for (bound, n) in BUCKETS.iter().zip(c.buckets) {
                let _ = writeln!(
                    out,
                    "preflight_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "preflight_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                c.latency_count
            );
            let _ = writeln!(
                out,
                "preflight_request_duration_seconds_sum{{{labels}}} {}",
                c.latency_sum
            );
            let _ = writeln!(
                out,
                "preflight_request_duration_seconds_count{{{labels}}} {}",
                c.latency_count
            );
        }
        out
    }
}
