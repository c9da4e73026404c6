//! The pieces every family of the exposition is written with: a family,
//! its series, counters and gauges with their labels.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// A series' labels, in order.
pub(super) type Labels = Vec<(&'static str, String)>;

/// One family: its descriptor, then `write` encodes its series.
pub(super) fn family(
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
pub(super) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A series of a family: with its labels, or bare where it has none.
pub(super) fn series<'a>(
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

pub(super) fn counter(m: &mut MetricEncoder<'_>, labels: &Labels, value: u64) -> fmt::Result {
    series(m, labels, |m| {
        m.encode_counter::<NoLabelSet, _, u64>(&value, None)
    })
}

pub(super) fn gauge(
    m: &mut MetricEncoder<'_>,
    labels: &Labels,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    series(m, labels, |m| m.encode_gauge(&value))
}

pub(super) fn with(labels: &Labels, key: &'static str, value: &str) -> Labels {
    let mut labels = labels.clone();
    labels.push((key, escape(value)));
    labels
}

pub(super) fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
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
