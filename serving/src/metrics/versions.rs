//! The families of each served version: its requests, what its runs
//! cost, its gathering and loading, and its contract's budgets.

use std::fmt;
use std::sync::Arc;

use preflight_bundle::{Manifest, QualityBudget};
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::counters::Counters;
use super::encode::{Labels, counter, escape, family, gauge, with};
use crate::registry::Registry;
use crate::served::Served;

/// A served version: model, version and what serves it.
pub(super) type Version = (String, u64, Arc<Served>);

/// What one of a version's figures reads of it.
enum Figure {
    Rows(fn(&Served) -> usize),
    Seconds(fn(&Served) -> f64),
    Count(fn(&Served) -> u64),
}

/// What each version holds and what its runs cost: rows in flight, a
/// row's cost, its gathered runs, how long it took to load; and the loads
/// of each model that failed.
pub(super) fn runs(
    e: &mut DescriptorEncoder<'_>,
    versions: &[(Labels, Version)],
    registry: &Registry,
) -> fmt::Result {
    let figures: [(&str, &str, Figure); 5] = [
        (
            "preflight_model_inflight_rows",
            "Rows of the version admitted and not yet answered.",
            Figure::Rows(|s| s.load.inflight_rows()),
        ),
        (
            "preflight_model_row_cost_seconds",
            "What a row of the version's main model costs, in the CPU time of the thread that \
             runs it, averaged over about its last eight runs (0 before its first): small batches \
             expected to cost more than a millisecond run on the run slots.",
            Figure::Seconds(|s| s.load.expected(1).as_secs_f64()),
        ),
        (
            "preflight_model_gathered_runs",
            "Runs of the main model for small requests that overlapped and were gathered.",
            Figure::Count(|s| s.gather.runs().0),
        ),
        (
            "preflight_model_gathered_requests",
            "Requests answered by gathered runs: over the runs, how many requests a run answered.",
            Figure::Count(|s| s.gather.runs().1),
        ),
        (
            "preflight_model_load_seconds",
            "How long the version took to load.",
            Figure::Seconds(|s| s.load_seconds),
        ),
    ];
    for (name, help, figure) in figures {
        let kind = match figure {
            Figure::Count(_) => MetricType::Counter,
            Figure::Rows(_) | Figure::Seconds(_) => MetricType::Gauge,
        };
        family(e, name, help, kind, |m| {
            for (labels, (_, _, served)) in versions {
                match figure {
                    Figure::Rows(read) => gauge(m, labels, read(served))?,
                    Figure::Seconds(read) => gauge(m, labels, read(served))?,
                    Figure::Count(read) => counter(m, labels, read(served))?,
                }
            }
            Ok(())
        })?;
    }
    family(
        e,
        "preflight_model_load_failures",
        "Loads of a model's versions whose bundle or main model failed.",
        MetricType::Counter,
        |m| {
            for (model, n) in registry.load_failures() {
                counter(m, &vec![("model", escape(&model))], n)?;
            }
            Ok(())
        },
    )
}

/// Requests by outcome, rows, fallback answers by reason, and latency, per
/// version; and the requests that matched no version.
pub(super) fn requests(
    e: &mut DescriptorEncoder<'_>,
    versions: &[(&Labels, &Counters)],
    unmatched: &Counters,
) -> fmt::Result {
    family(
        e,
        "preflight_requests",
        "Inference requests, by outcome.",
        MetricType::Counter,
        |m| {
            for (labels, c) in versions {
                for (outcome, n) in c.requests().filter(|(_, n)| *n > 0) {
                    counter(m, &with(labels, "outcome", outcome), n)?;
                }
            }
            Ok(())
        },
    )?;
    family(
        e,
        "preflight_unmatched_requests",
        "Inference requests for a model or version that is not loaded, by outcome.",
        MetricType::Counter,
        |m| {
            for (outcome, n) in unmatched.requests().filter(|(_, n)| *n > 0) {
                counter(m, &vec![("outcome", outcome.to_owned())], n)?;
            }
            Ok(())
        },
    )?;
    family(
        e,
        "preflight_rows",
        "Rows predicted.",
        MetricType::Counter,
        |m| {
            for (labels, c) in versions {
                counter(m, labels, c.rows())?;
            }
            Ok(())
        },
    )?;
    family(
        e,
        "preflight_fallback",
        "Requests answered by the fast fallback, by reason.",
        MetricType::Counter,
        |m| {
            for (labels, c) in versions {
                for (reason, n) in c.fallbacks().filter(|(_, n)| *n > 0) {
                    counter(m, &with(labels, "reason", reason), n)?;
                }
            }
            Ok(())
        },
    )?;
    family(
        e,
        "preflight_request_duration_seconds",
        "Inference request latency.",
        MetricType::Histogram,
        |m| {
            for (labels, c) in versions {
                let (sum, count, buckets) = c.histogram();
                m.encode_family(*labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
            Ok(())
        },
    )
}

/// Each version's contract, as gauges the alert rules compare against:
/// the latency budgets, the fallback rate allowed, the quality bound.
pub(super) fn contract(
    e: &mut DescriptorEncoder<'_>,
    versions: &[(Labels, Version)],
) -> fmt::Result {
    type Budget = fn(&Manifest) -> Option<f64>;
    let latency: [(&str, &str, Budget); 3] = [
        (
            "preflight_contract_latency_p50_seconds",
            "The contract's p50 latency budget.",
            |m| m.contract.latency.as_ref().map(|l| l.p50_ms / 1000.0),
        ),
        (
            "preflight_contract_latency_p99_seconds",
            "The contract's p99 latency budget.",
            |m| m.contract.latency.as_ref().map(|l| l.p99_ms / 1000.0),
        ),
        (
            "preflight_contract_fallback_rate_max",
            "The share of requests the contract lets the fallback answer.",
            |m| m.contract.latency.as_ref().map(|l| l.fallback_rate()),
        ),
    ];
    for (name, help, budget) in latency {
        family(e, name, help, MetricType::Gauge, |m| {
            for (labels, (_, _, served)) in versions {
                if let Some(value) = budget(&served.manifest) {
                    gauge(m, labels, value)?;
                }
            }
            Ok(())
        })?;
    }
    type Bound = fn(&QualityBudget) -> Option<f64>;
    let quality: [(&str, &str, Bound); 2] = [
        (
            "preflight_contract_quality_max",
            "The contract's upper bound on its quality metric (lower is better).",
            |q| q.max,
        ),
        (
            "preflight_contract_quality_min",
            "The contract's lower bound on its quality metric (higher is better).",
            |q| q.min,
        ),
    ];
    for (name, help, bound) in quality {
        family(e, name, help, MetricType::Gauge, |m| {
            for (labels, (_, _, served)) in versions {
                for q in &served.manifest.contract.quality {
                    if let Some(value) = bound(q) {
                        gauge(m, &with(labels, "metric", q.metric.as_str()), value)?;
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}
