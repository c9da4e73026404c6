//! Where requests go: each model's route and its shadow's figures, and
//! admission's rows in flight and run slots.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::encode::{Labels, counter, escape, family, gauge, get};
use crate::admission::Admission;
use crate::registry::Registry;
use crate::rollout::{Mode, Route};

/// Each model's route: its share, the requests it sent, and what the
/// candidate did in shadow. Labels: the model, the candidate's version and
/// the mode; the canary's own requests, fallbacks and latency are the
/// candidate version's series.
pub(super) fn routes(e: &mut DescriptorEncoder<'_>, registry: &Registry) -> fmt::Result {
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

pub(super) fn admission(e: &mut DescriptorEncoder<'_>, admission: &Admission) -> fmt::Result {
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
