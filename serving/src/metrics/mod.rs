//! Service metrics in the Prometheus text format: requests, rows, fallbacks
//! and latency, per model and version.
//!
//! Every served model version carries its own [`Counters`], atomics that a
//! request updates without taking a lock. A request that reaches no loaded
//! version counts in one unlabelled set, so model names a client makes up
//! never add series. A scrape reads the counters as they are; a request
//! recorded during it may show in some series and not yet in others, but a
//! histogram's buckets never exceed its count.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::admission::Admission;
use crate::infer::FallbackReason;
use crate::logging::DroppedLines;
use crate::monitor::{Drift, Monitor, MonitorCounters, MonitorReport};
use crate::registry::Registry;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How an inference request ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    BadRequest,
    NotFound,
    Unauthorized,
    Unavailable,
    /// Turned away at an admission limit.
    Shed,
    Error,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::BadRequest,
        Outcome::NotFound,
        Outcome::Unauthorized,
        Outcome::Unavailable,
        Outcome::Shed,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::BadRequest => "bad_request",
            Outcome::NotFound => "not_found",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Unavailable => "unavailable",
            Outcome::Shed => "shed",
            Outcome::Error => "error",
        }
    }
}

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

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Requests by outcome label.
    fn requests(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Outcome::ALL
            .into_iter()
            .map(|o| (o.as_str(), Self::get(&self.requests[o as usize])))
    }

    /// Fallback answers by reason label.
    fn fallbacks(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        FallbackReason::ALL
            .into_iter()
            .map(|r| (r.as_str(), Self::get(&self.fallbacks[r as usize])))
    }

    /// The latency histogram's series: buckets, `+Inf`, sum and count.
    fn histogram(&self, f: &mut Family<'_>, labels: &str) {
        let buckets: Vec<u64> = self.buckets.iter().map(Self::get).collect();
        let count = Self::get(&self.count);
        for (bound, n) in BUCKETS.iter().zip(buckets) {
            f.series("_bucket", &format!("{labels},le=\"{bound}\""), n);
        }
        f.series("_bucket", &format!("{labels},le=\"+Inf\""), count);
        let seconds = Self::get(&self.latency_micros) as f64 / 1e6;
        f.series("_sum", labels, seconds);
        f.series("_count", labels, count);
    }
}

/// The server's metrics: the registry's versions carry their own counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests for a model or version that is not loaded.
    pub unmatched: Counters,
}

/// A label value as the text format writes it: backslash, double quote and
/// line feed escaped. Model names are already restricted to
/// `[a-z0-9._-]`; this holds whatever a name may become.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// One metric family of the exposition, written as its series come.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Self { out, name }
    }

    fn series(&mut self, suffix: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{}{suffix}{{{labels}}} {value}", self.name);
    }

    /// One series per non-zero count, with `key="value"` after `labels`.
    fn counts(
        &mut self,
        labels: &str,
        key: &str,
        counts: impl Iterator<Item = (&'static str, u64)>,
    ) {
        let comma = if labels.is_empty() { "" } else { "," };
        for (value, n) in counts.filter(|(_, n)| *n > 0) {
            self.series("", &format!("{labels}{comma}{key}=\"{value}\""), n);
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every loaded version's counters,
    /// the unmatched requests and the versions by state.
    pub fn render(
        &self,
        registry: &Registry,
        admission: &Admission,
        monitor: &Monitor,
        log: Option<&DroppedLines>,
    ) -> String {
        let versions = registry.served();
        let mut out = String::new();
        let mut f = Family::new(
            &mut out,
            "preflight_models",
            "gauge",
            "Model versions loaded, by state.",
        );
        for (state, n) in registry.states() {
            f.series("", &format!("state=\"{}\"", state.as_str()), n);
        }
        let labelled: Vec<(String, &Counters)> = versions
            .iter()
            .map(|(model, version, served)| {
                (
                    format!("model=\"{}\",version=\"{version}\"", escape(model)),
                    &served.counters,
                )
            })
            .collect();
        let mut f = Family::new(
            &mut out,
            "preflight_requests_total",
            "counter",
            "Inference requests, by outcome.",
        );
        for (labels, c) in &labelled {
            f.counts(labels, "outcome", c.requests());
        }
        let mut f = Family::new(
            &mut out,
            "preflight_unmatched_requests_total",
            "counter",
            "Inference requests for a model or version that is not loaded, by outcome.",
        );
        f.counts("", "outcome", self.unmatched.requests());
        let mut f = Family::new(
            &mut out,
            "preflight_rows_total",
            "counter",
            "Rows predicted.",
        );
        for (labels, c) in &labelled {
            f.series("", labels, Counters::get(&c.rows));
        }
        let mut f = Family::new(
            &mut out,
            "preflight_fallback_total",
            "counter",
            "Requests answered by the fast fallback, by reason.",
        );
        for (labels, c) in &labelled {
            f.counts(labels, "reason", c.fallbacks());
        }
        let mut f = Family::new(
            &mut out,
            "preflight_request_duration_seconds",
            "histogram",
            "Inference request latency.",
        );
        for (labels, c) in &labelled {
            c.histogram(&mut f, labels);
        }
        let reports: Vec<(&str, MonitorReport)> = labelled
            .iter()
            .zip(&versions)
            .map(|((labels, _), (model, version, served))| {
                (labels.as_str(), served.monitor.report(model, *version))
            })
            .collect();
        drift(&mut out, &reports);
        feedback(&mut out, &reports, &monitor.counters);
        let gauges = [
            (
                "preflight_inflight_rows",
                "gauge",
                "Rows admitted and not yet answered.",
                admission.inflight_rows() as u64,
            ),
            (
                "preflight_model_runs",
                "gauge",
                "Batches running on blocking threads now.",
                admission.running() as u64,
            ),
            (
                "preflight_runs_stopped_total",
                "counter",
                "Runs a deadline stopped before their end, the fallback having answered.",
                admission.stopped(),
            ),
        ];
        for (name, kind, help, value) in gauges {
            Family::new(&mut out, name, kind, help).series("", "", value);
        }
        if let Some(log) = log {
            let mut f = Family::new(
                &mut out,
                "preflight_log_lines_dropped_total",
                "counter",
                "Log lines dropped rather than delay serving, by reason.",
            );
            f.series("", "reason=\"queue_full\"", log.queue_full());
            f.series("", "reason=\"unwritable\"", log.unwritable());
        }
        if let Some(bytes) = crate::heap::in_use() {
            let mut f = Family::new(
                &mut out,
                "preflight_process_heap_bytes",
                "gauge",
                "Bytes in use from the C allocator, ONNX Runtime's included.",
            );
            f.series("", "", bytes);
        }
        out
    }
}

/// Each version's drift, input by input and output by output.
fn drift(out: &mut String, reports: &[(&str, MonitorReport)]) {
    let mut f = Family::new(
        out,
        "preflight_monitor_rows",
        "gauge",
        "Rows in the version's monitoring window.",
    );
    for (labels, r) in reports {
        f.series("", labels, r.rows);
    }
    type Figure = fn(&Drift) -> Option<f64>;
    let inputs: [(&'static str, &str, Figure); 4] = [
        (
            "preflight_input_psi",
            "Population stability index of the input over the window, against reference.json.",
            |d| d.psi,
        ),
        (
            "preflight_input_null_rate",
            "Share of the window's rows where the input is null.",
            |d| Some(d.null_rate),
        ),
        (
            "preflight_input_unknown_category_rate",
            "Share of the window's rows with a category the model was not trained on.",
            |d| Some(d.unknown_category_rate),
        ),
        (
            "preflight_input_out_of_range_rate",
            "Share of the window's rows with a value outside the training range.",
            |d| Some(d.out_of_range_rate),
        ),
    ];
    for (name, help, figure) in inputs {
        let mut f = Family::new(out, name, "gauge", help);
        for (labels, r) in reports.iter().filter(|(_, r)| r.rows > 0) {
            for (input, d) in &r.inputs {
                if let Some(value) = figure(d) {
                    f.series("", &format!("{labels},input=\"{}\"", escape(input)), value);
                }
            }
        }
    }
    let mut f = Family::new(
        out,
        "preflight_output_psi",
        "gauge",
        "Population stability index of the output over the window, against the training \
         predictions.",
    );
    for (labels, r) in reports {
        for (output, d) in &r.outputs {
            if let Some(psi) = d.psi {
                f.series("", &format!("{labels},output=\"{}\"", escape(output)), psi);
            }
        }
    }
}

/// The live error of each version that got feedback, and what the
/// feedback store kept and let go.
fn feedback(out: &mut String, reports: &[(&str, MonitorReport)], counters: &MonitorCounters) {
    let mut f = Family::new(
        out,
        "preflight_live_error",
        "gauge",
        "The contract's quality metric over the last rows joined with their feedback.",
    );
    for (labels, r) in reports {
        if let Some(live) = &r.live_error {
            f.series(
                "",
                &format!("{labels},metric=\"{}\"", live.metric),
                live.value,
            );
        }
    }
    let mut f = Family::new(
        out,
        "preflight_live_error_rows",
        "gauge",
        "Rows the live error is computed over.",
    );
    for (labels, r) in reports {
        if let Some(live) = &r.live_error {
            f.series("", labels, live.count);
        }
    }
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut f = Family::new(
        out,
        "preflight_feedback_evicted_total",
        "counter",
        "Predictions that left the feedback store without feedback, by reason.",
    );
    f.series("", "reason=\"capacity\"", get(&counters.evicted_capacity));
    f.series("", "reason=\"expired\"", get(&counters.evicted_expired));
    let singles = [
        (
            "preflight_feedback_rows_total",
            "counter",
            "Rows joined with their observed targets.",
            get(&counters.joined_rows),
        ),
        (
            "preflight_feedback_pending",
            "gauge",
            "Predictions waiting for feedback.",
            get(&counters.pending),
        ),
        (
            "preflight_monitor_dropped_total",
            "counter",
            "Answered requests the monitor did not see: its queue was full.",
            get(&counters.dropped),
        ),
    ];
    for (name, kind, help, value) in singles {
        Family::new(out, name, kind, help).series("", "", value);
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn label_values_cannot_break_out_of_their_quotes() {
        assert_eq!(escape("eta-madrid"), "eta-madrid");
        assert_eq!(escape("a\"}\nup 1\\"), r#"a\"}\nup 1\\"#);
    }
}
