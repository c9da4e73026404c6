//! `/metrics` in the OpenMetrics text format, written by `prometheus-client`
//! from what the server holds at the scrape: one collector reads the
//! versions' counters and monitors, admission, the log and the process.
//!
//! Names follow Prometheus's conventions: `preflight_` and a unit suffix
//! (`_seconds`, `_bytes`), `_total` on counters (added by the encoder), and
//! labels `model` and `version` on everything of one model version.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::connections::Closed;
use super::counters::{Counters, Metrics};
use super::process;
use preflight_bundle::{Manifest, QualityBudget};

use crate::admission::Admission;
use crate::logging::DroppedLines;
use crate::monitor::{Drift, MonitorCounters, MonitorReport};
use crate::registry::Registry;
use crate::rollout::{Mode, Route};
use crate::served::Served;

type Labels = Vec<(&'static str, String)>;
/// A served version: model, version and what serves it.
type Version = (String, u64, Arc<Served>);

/// What a scrape reads: the server's parts, from whatever holds them.
pub(crate) trait Scraped: fmt::Debug + Send + Sync + 'static {
    fn registry(&self) -> &Registry;
    fn metrics(&self) -> &Metrics;
    fn admission(&self) -> &Admission;
    fn monitor(&self) -> &MonitorCounters;
    /// The process's log, when the server writes one.
    fn log(&self) -> Option<&DroppedLines>;
}

/// The exposition of everything `parts` holds now.
pub(crate) fn render(parts: Arc<dyn Scraped>) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Scrape(parts)));
    let mut out = String::new();
    // Writing to a String cannot fail; a collector's error would be ours.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(%error, "the metrics could not be written");
    }
    out
}

#[derive(Debug)]
struct Scrape(Arc<dyn Scraped>);

/// One family: its descriptor, then `write` encodes its series.
fn family(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    write: impl FnOnce(&mut MetricEncoder<'_>) -> fmt::Result,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    write(&mut m)
}

/// A label value as the text format writes it: backslash, double quote and
/// line feed escaped. Model names are already restricted to
/// `[a-z0-9._-]`; this holds whatever a name may become.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A series of a family: with its labels, or bare where it has none.
fn series<'a>(
    m: &'a mut MetricEncoder<'_>,
    labels: &'a Labels,
    encode: impl FnOnce(&mut MetricEncoder<'_>) -> fmt::Result,
) -> fmt::Result {
    if labels.is_empty() {
        encode(m)
    } else {
        encode(&mut m.encode_family(labels)?)
    }
}

fn counter(m: &mut MetricEncoder<'_>, labels: &Labels, value: u64) -> fmt::Result {
    series(m, labels, |m| {
        m.encode_counter::<NoLabelSet, _, u64>(&value, None)
    })
}

fn gauge(m: &mut MetricEncoder<'_>, labels: &Labels, value: impl EncodeGaugeValue) -> fmt::Result {
    series(m, labels, |m| m.encode_gauge(&value))
}

fn with(labels: &Labels, key: &'static str, value: &str) -> Labels {
    let mut labels = labels.clone();
    labels.push((key, escape(value)));
    labels
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let parts = self.0.as_ref();
        let versions: Vec<(Labels, Version)> = parts
            .registry()
            .served()
            .into_iter()
            .map(|(model, version, served)| {
                let labels = vec![("model", escape(&model)), ("version", version.to_string())];
                (labels, (model, version, served))
            })
            .collect();
        family(
            &mut e,
            "preflight_build_info",
            "The preflight-serve build: its version.",
            MetricType::Gauge,
            |m| {
                gauge(
                    m,
                    &vec![("version", env!("CARGO_PKG_VERSION").to_owned())],
                    1,
                )
            },
        )?;
        family(
            &mut e,
            "preflight_models",
            "Model versions loaded, by state.",
            MetricType::Gauge,
            |m| {
                for (s, n) in parts.registry().states() {
                    gauge(m, &vec![("state", s.as_str().to_owned())], n)?;
                }
                Ok(())
            },
        )?;
        let counters: Vec<(&Labels, &Counters)> = versions
            .iter()
            .map(|(l, (_, _, s))| (l, &s.counters))
            .collect();
        requests(&mut e, &counters, &parts.metrics().unmatched)?;
        family(
            &mut e,
            "preflight_model_inflight_rows",
            "Rows of the version admitted and not yet answered.",
            MetricType::Gauge,
            |m| {
                for (labels, (_, _, served)) in &versions {
                    gauge(m, labels, served.load.inflight_rows())?;
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "preflight_model_row_cost_seconds",
            "What a row of the version's main model costs, in the CPU time of the thread that \
             runs it, averaged over about its last eight runs (0 before its first): small batches \
             expected to cost more than a millisecond run on the run slots.",
            MetricType::Gauge,
            |m| {
                for (labels, (_, _, served)) in &versions {
                    gauge(m, labels, served.load.expected(1).as_secs_f64())?;
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "preflight_model_gathered_runs",
            "Runs of the main model for small requests that overlapped and were gathered.",
            MetricType::Counter,
            |m| {
                for (labels, (_, _, served)) in &versions {
                    counter(m, labels, served.gather.runs().0)?;
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "preflight_model_gathered_requests",
            "Requests answered by gathered runs: over the runs, how many requests a run answered.",
            MetricType::Counter,
            |m| {
                for (labels, (_, _, served)) in &versions {
                    counter(m, labels, served.gather.runs().1)?;
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "preflight_model_load_seconds",
            "How long the version took to load.",
            MetricType::Gauge,
            |m| {
                for (labels, (_, _, served)) in &versions {
                    gauge(m, labels, served.load_seconds)?;
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "preflight_model_load_failures",
            "Loads of a model's versions whose bundle or main model failed.",
            MetricType::Counter,
            |m| {
                for (model, n) in parts.registry().load_failures() {
                    counter(m, &vec![("model", escape(&model))], n)?;
                }
                Ok(())
            },
        )?;
        contract(&mut e, &versions)?;
        routes(&mut e, parts.registry())?;
        admission(&mut e, parts.admission())?;
        let reports: Vec<(&Labels, MonitorReport)> = versions
            .iter()
            .map(|(labels, (model, version, served))| {
                (labels, served.monitor.report(model, *version))
            })
            .collect();
        drift(&mut e, &reports)?;
        feedback(&mut e, &reports, parts.monitor())?;
        family(
            &mut e,
            "preflight_connections_closed",
            "Connections and requests that ended without a normal answer, by reason \
             (docs/serving.md, \"Connections\").",
            MetricType::Counter,
            |m| {
                for why in Closed::ALL {
                    let labels = vec![("reason", why.as_str().to_owned())];
                    counter(m, &labels, parts.metrics().connections.get(why))?;
                }
                Ok(())
            },
        )?;
        if let Some(log) = parts.log() {
            family(
                &mut e,
                "preflight_log_lines_dropped",
                "Log lines dropped rather than delay serving, by reason.",
                MetricType::Counter,
                |m| {
                    counter(m, &vec![("reason", "queue_full".into())], log.queue_full())?;
                    counter(m, &vec![("reason", "unwritable".into())], log.unwritable())
                },
            )?;
        }
        process::encode(&mut e)
    }
}

/// Requests by outcome, rows, fallback answers by reason, and latency, per
/// version; and the requests that matched no version.
fn requests(
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
fn contract(e: &mut DescriptorEncoder<'_>, versions: &[(Labels, Version)]) -> fmt::Result {
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

/// Each model's route: its share, the requests it sent, and what the
/// candidate did in shadow. Labels: the model, the candidate's version and
/// the mode; the canary's own requests, fallbacks and latency are the
/// candidate version's series.
fn routes(e: &mut DescriptorEncoder<'_>, registry: &Registry) -> fmt::Result {
    let routes: Vec<(Labels, Arc<Route>)> = registry
        .routes()
        .into_iter()
        .map(|(model, _, route)| {
            let labels = vec![
                ("model", escape(&model)),
                ("version", route.candidate.to_string()),
                ("mode", route.mode.as_str().to_owned()),
            ];
            (labels, route)
        })
        .collect();
    family(
        e,
        "preflight_route_percent",
        "The share of the model's default requests the route sends to the candidate, in percent.",
        MetricType::Gauge,
        |m| {
            for (labels, route) in &routes {
                gauge(m, labels, route.percent)?;
            }
            Ok(())
        },
    )?;
    type Count = fn(&Route) -> u64;
    let counts: [(&str, &str, Count); 5] = [
        (
            "preflight_route_requests",
            "Default requests the route sent to the candidate.",
            |r| get(&r.routed),
        ),
        (
            "preflight_shadow_rows",
            "Rows the candidate computed in shadow.",
            |r| get(&r.shadow.rows),
        ),
        (
            "preflight_shadow_divergent_rows",
            "Shadow rows where the candidate is outside its parity tolerance of the answer served.",
            |r| get(&r.shadow.divergent),
        ),
        (
            "preflight_shadow_shed",
            "Shadow runs not made: the server was busy, or one was going.",
            |r| get(&r.shadow.shed),
        ),
        (
            "preflight_shadow_failed",
            "Shadow runs the candidate's main model failed.",
            |r| get(&r.shadow.failed),
        ),
    ];
    for (name, help, count) in counts {
        family(e, name, help, MetricType::Counter, |m| {
            for (labels, route) in &routes {
                counter(m, labels, count(route))?;
            }
            Ok(())
        })?;
    }
    family(
        e,
        "preflight_shadow_max_abs_error",
        "The largest |candidate − answer served| seen in shadow since the route was set.",
        MetricType::Gauge,
        |m| {
            for (labels, route) in routes.iter().filter(|(_, r)| r.mode == Mode::Shadow) {
                gauge(m, labels, route.shadow.max_abs())?;
            }
            Ok(())
        },
    )
}

fn admission(e: &mut DescriptorEncoder<'_>, admission: &Admission) -> fmt::Result {
    let none = Labels::new();
    family(
        e,
        "preflight_inflight_rows",
        "Rows admitted and not yet answered.",
        MetricType::Gauge,
        |m| gauge(m, &none, admission.inflight_rows()),
    )?;
    family(
        e,
        "preflight_model_runs",
        "Batches running on blocking threads now.",
        MetricType::Gauge,
        |m| gauge(m, &none, admission.running()),
    )?;
    family(
        e,
        "preflight_runs_stopped",
        "Runs a deadline stopped before their end, the fallback having answered.",
        MetricType::Counter,
        |m| counter(m, &none, admission.stopped()),
    )?;
    if let Some(bytes) = crate::heap::in_use() {
        family(
            e,
            "preflight_process_heap_bytes",
            "Bytes in use from the C allocator, ONNX Runtime's included.",
            MetricType::Gauge,
            |m| gauge(m, &none, bytes),
        )?;
    }
    Ok(())
}

/// Each version's drift, input by input and output by output.
fn drift(e: &mut DescriptorEncoder<'_>, reports: &[(&Labels, MonitorReport)]) -> fmt::Result {
    family(
        e,
        "preflight_monitor_rows",
        "Rows in the version's monitoring window.",
        MetricType::Gauge,
        |m| {
            for (labels, r) in reports {
                gauge(m, labels, r.rows)?;
            }
            Ok(())
        },
    )?;
    type Figure = fn(&Drift) -> Option<f64>;
    let inputs: [(&str, &str, Figure); 4] = [
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
        family(e, name, help, MetricType::Gauge, |m| {
            for (labels, r) in reports.iter().filter(|(_, r)| r.rows > 0) {
                for (input, d) in &r.inputs {
                    if let Some(value) = figure(d) {
                        gauge(m, &with(labels, "input", input), value)?;
                    }
                }
            }
            Ok(())
        })?;
    }
    family(
        e,
        "preflight_output_psi",
        "Population stability index of the output over the window, against the training \
         predictions.",
        MetricType::Gauge,
        |m| {
            for (labels, r) in reports {
                for (output, d) in &r.outputs {
                    if let Some(psi) = d.psi {
                        gauge(m, &with(labels, "output", output), psi)?;
                    }
                }
            }
            Ok(())
        },
    )
}

/// The live error of each version that got feedback, and what the
/// feedback store kept and let go.
fn feedback(
    e: &mut DescriptorEncoder<'_>,
    reports: &[(&Labels, MonitorReport)],
    counters: &MonitorCounters,
) -> fmt::Result {
    family(
        e,
        "preflight_live_error",
        "The contract's quality metric over the last rows joined with their feedback.",
        MetricType::Gauge,
        |m| {
            for (labels, r) in reports {
                if let Some(live) = &r.live_error {
                    gauge(m, &with(labels, "metric", live.metric), live.value)?;
                }
            }
            Ok(())
        },
    )?;
    family(
        e,
        "preflight_live_error_rows",
        "Rows the live error is computed over.",
        MetricType::Gauge,
        |m| {
            for (labels, r) in reports {
                if let Some(live) = &r.live_error {
                    gauge(m, labels, live.count)?;
                }
            }
            Ok(())
        },
    )?;
    let none = Labels::new();
    family(
        e,
        "preflight_feedback_evicted",
        "Predictions that left the feedback store without feedback, by reason.",
        MetricType::Counter,
        |m| {
            let capacity = get(&counters.evicted_capacity);
            counter(m, &vec![("reason", "capacity".into())], capacity)?;
            counter(
                m,
                &vec![("reason", "expired".into())],
                get(&counters.evicted_expired),
            )
        },
    )?;
    family(
        e,
        "preflight_feedback_rows",
        "Rows joined with their observed targets.",
        MetricType::Counter,
        |m| counter(m, &none, get(&counters.joined_rows)),
    )?;
    family(
        e,
        "preflight_feedback_pending",
        "Predictions waiting for feedback.",
        MetricType::Gauge,
        |m| gauge(m, &none, get(&counters.pending)),
    )?;
    family(
        e,
        "preflight_monitor_dropped",
        "Answered requests the monitor did not see: its queue was full.",
        MetricType::Counter,
        |m| counter(m, &none, get(&counters.dropped)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_cannot_break_out_of_their_quotes() {
        assert_eq!(escape("eta-madrid"), "eta-madrid");
        assert_eq!(escape("a\"}\nup 1\\"), r#"a\"}\nup 1\\"#);
    }
}
