//! What the monitor sees: each version's drift and live error, and what
//! the feedback store kept and let go.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::encode::{Labels, counter, family, gauge, get, with};
use crate::monitor::{Drift, MonitorCounters, MonitorReport};

/// Each version's drift, input by input and output by output.
pub(super) fn drift(
    e: &mut DescriptorEncoder<'_>,
    reports: &[(&Labels, MonitorReport)],
) -> fmt::Result {
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
pub(super) fn feedback(
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
