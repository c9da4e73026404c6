//! `latency`: open-loop, constant-rate load at the contract's rate and
//! request count, from real sample rows. Each request is timed from its
//! intended send time, so a stall shows in the percentiles instead of
//! slowing the load (no coordinated omission).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

use super::{ModelUnderTest, Suite, skipped};
use crate::client::{Unreachable, request_body};
use crate::report::{Check, SuiteReport};

/// How much p99 may grow against the baseline when the contract does not say.
const DEFAULT_P99_REGRESSION: f64 = 0.2;
/// At most this many warm-up requests precede the measured run.
const WARM_UP_MAX: u64 = 100;
/// Below this, a p99 difference is noise of a shared machine, not a
/// regression: single-digit p99s move by a few milliseconds run to run.
const P99_SLACK_MS: f64 = 5.0;

pub(super) async fn run(model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    let manifest = model.bundle.manifest();
    let (Some(samples), Some(budget)) = (&model.samples, &manifest.contract.latency) else {
        return Ok(skipped(
            Suite::Latency,
            "needs samples.jsonl and contract.latency",
        ));
    };
    let bodies: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| request_body(manifest, &[s.inputs.as_slice()], None))
        .collect();
    let interval = Duration::from_secs_f64(1.0 / budget.rate_per_s);
    // A short unrecorded run first, as load tests do: it opens connections
    // and lets the endpoint settle (a pool that grows, a cold cache).
    let warm_up = (budget.requests / 10).clamp(1, WARM_UP_MAX);
    open_loop(model, &bodies, interval, warm_up).await?;
    let (h, failures) = open_loop(model, &bodies, interval, budget.requests).await?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let (p50, p90, p99, max) = (ms(0.5), ms(0.9), ms(0.99), h.max() as f64 / 1000.0);
    let error_rate = failures.len() as f64 / budget.requests as f64;

    let mut checks = vec![
        Check::new(
            "p50",
            p50 <= budget.p50_ms,
            format!("p50 {p50:.2} ms, budget {} ms", budget.p50_ms),
        ),
        Check::new(
            "p99",
            p99 <= budget.p99_ms,
            format!(
                "p99 {p99:.2} ms, budget {} ms (p90 {p90:.2} ms, max {max:.2} ms)",
                budget.p99_ms
            ),
        ),
        Check::new(
            "errors",
            failures.is_empty(),
            if failures.is_empty() {
                format!(
                    "{} requests at {}/s, none failed",
                    budget.requests, budget.rate_per_s
                )
            } else {
                format!(
                    "error rate {:.1}% ({} of {} requests failed; first: {})",
                    error_rate * 100.0,
                    failures.len(),
                    budget.requests,
                    failures[0]
                )
            },
        ),
    ];
    let limit = budget.max_p99_regression.unwrap_or(DEFAULT_P99_REGRESSION);
    checks.push(match model.baseline_metric(Suite::Latency, "p99_ms") {
        None => Check::skipped("p99 against the baseline", "no baseline report, or it has no latency figures"),
        Some(base) => {
            let allowed = base * (1.0 + limit) + P99_SLACK_MS;
            Check::new("p99 against the baseline", p99 <= allowed, format!("p99 {p99:.2} ms against the baseline's {base:.2} ms (limit +{:.0}% + {P99_SLACK_MS} ms)", limit * 100.0))
        }
    });
    let mut report = SuiteReport::new(Suite::Latency.name(), checks);
    report.metrics = [
        ("p50_ms", p50),
        ("p90_ms", p90),
        ("p99_ms", p99),
        ("max_ms", max),
        ("error_rate", error_rate),
        ("requests", budget.requests as f64),
        ("rate_per_s", budget.rate_per_s),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let buckets: Vec<serde_json::Value> = h
        .iter_log(1000, 1.5)
        .map(|v| {
            json!([
                v.value_iterated_to() as f64 / 1000.0,
                v.count_since_last_iteration()
            ])
        })
        .collect();
    report.details = json!({ "histogram_ms": buckets });
    Ok(report)
}

/// Sends `count` single-row requests at a constant rate, each timed from its
/// intended send time; the latencies, and the failed answers.
async fn open_loop(
    model: &ModelUnderTest,
    bodies: &[serde_json::Value],
    interval: Duration,
    count: u64,
) -> Result<(Histogram<u64>, Vec<String>), Unreachable> {
    let manifest = model.bundle.manifest();
    let histogram =
        Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).map_err(|e| Unreachable {
            url: model.client.base.clone(),
            reason: e.to_string(),
        })?;
    let histogram = Arc::new(Mutex::new(histogram));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::new();
    for i in 0..count {
        let intended = start + interval.mul_f64(i as f64);
        // tokio's timer has millisecond resolution: sleep most of the way, then yield.
        tokio::time::sleep_until(
            intended
                .checked_sub(Duration::from_millis(1))
                .unwrap_or(intended),
        )
        .await;
        while tokio::time::Instant::now() < intended {
            tokio::task::yield_now().await;
        }
        let client = model.client.clone();
        let body = bodies[i as usize % bodies.len()].clone();
        let (histogram, failures) = (Arc::clone(&histogram), Arc::clone(&failures));
        let manifest = manifest.clone();
        tasks.push(tokio::spawn(async move {
            let outcome = client.post_infer(&manifest, &body, 1).await;
            let micros = u64::try_from(intended.elapsed().as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            let _ = histogram
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(micros);
            match outcome {
                Ok(answer) if answer.ok() => Ok(()),
                Ok(answer) => {
                    failures
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(answer.describe());
                    Ok(())
                }
                Err(unreachable) => Err(unreachable),
            }
        }));
    }
    for task in tasks {
        if let Ok(Err(unreachable)) = task.await {
            return Err(unreachable);
        }
    }
    let h = histogram
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let failures = failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Ok((h, failures))
}
