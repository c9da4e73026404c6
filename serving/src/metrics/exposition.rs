//! `/metrics` in the OpenMetrics text format, written by `prometheus-client`
//! from what the server holds at the scrape: one collector reads the
//! versions' counters and monitors, admission, the log and the process.
//!
//! Names follow Prometheus's conventions: `preflight_` and a unit suffix
//! (`_seconds`, `_bytes`), `_total` on counters (added by the encoder), and
//! labels `model` and `version` on everything of one model version.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::connections::Closed;
use super::counters::{Counters, Metrics};
use super::encode::{Labels, counter, escape, family, gauge};
use super::versions::Version;
use super::{monitoring, process, routing, versions};
use crate::admission::Admission;
use crate::logging::DroppedLines;
use crate::monitor::{MonitorCounters, MonitorReport};
use crate::registry::Registry;
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
        versions::requests(&mut e, &counters, &parts.metrics().unmatched)?;
        versions::runs(&mut e, &versions, parts.registry())?;
        versions::contract(&mut e, &versions)?;
        routing::routes(&mut e, parts.registry())?;
        routing::admission(&mut e, parts.admission())?;
        let reports: Vec<(&Labels, MonitorReport)> = versions
            .iter()
            .map(|(labels, (model, version, served))| {
                (labels, served.monitor.report(model, *version))
            })
            .collect();
        monitoring::drift(&mut e, &reports)?;
        monitoring::feedback(&mut e, &reports, parts.monitor())?;
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
