//! How the served answers compare with the training process's: value by
//! value within the tolerance, at which stage each divergence starts, the
//! worst rows, and the batch's error distribution.

use preflight_bundle::{Record, Tolerance};
use serde_json::json;

use crate::client::expected;
use crate::slots::{SlotKind, agrees, near_tie, slots};
use crate::suites::ModelUnderTest;

/// How the served answers compare with the training process's.
pub(super) struct Comparison {
    pub(super) passed: usize,
    pub(super) total: usize,
    pub(super) max_abs: f64,
    pub(super) max_rel: f64,
    /// `(|Δ|, sample, slot)` of every value off, the worst first.
    pub(super) worst: Vec<(f64, usize, usize)>,
    /// Values off that the artifact already gets wrong (training → artifact),
    /// and that it gets right (artifact → endpoint).
    pub(super) stages: (usize, usize),
    /// Samples whose served label differs from training's where training's
    /// top two probabilities lie within the tolerance: float rounding may
    /// name either class, so they are reported, not failed.
    pub(super) near_ties: Vec<usize>,
}

pub(super) fn compare(
    model: &ModelUnderTest,
    tolerance: Tolerance,
    samples: &[Record],
    (positions, artifact): (&[usize], Option<&[Vec<f64>]>),
    columns: &[Vec<f64>],
) -> Comparison {
    let manifest = model.bundle.manifest();
    let slots = slots(manifest);
    let mut found = Comparison {
        passed: 0,
        total: samples.len() * columns.len(),
        max_abs: 0.0,
        max_rel: 0.0,
        worst: Vec::new(),
        stages: (0, 0),
        near_ties: Vec::new(),
    };
    for (o, column) in columns.iter().enumerate() {
        let kind = slots[o].kind;
        for (i, (sample, &got)) in samples.iter().zip(column).enumerate() {
            let want = expected(manifest, sample, o);
            let abs = (got - want).abs();
            if agrees(kind, tolerance, got, want) {
                found.passed += 1;
            } else if kind == SlotKind::Label && near_tie(manifest, sample, tolerance) {
                found.passed += 1;
                found.near_ties.push(i);
            } else {
                found
                    .worst
                    .push((if abs.is_nan() { f64::INFINITY } else { abs }, i, o));
                match artifact {
                    Some(a) if agrees(kind, tolerance, a[o][positions[i]], want) => {
                        found.stages.1 += 1;
                    }
                    Some(_) => found.stages.0 += 1,
                    None => {}
                }
            }
            if abs.is_finite() && kind != SlotKind::Label {
                found.max_abs = found.max_abs.max(abs);
                found.max_rel = found.max_rel.max(abs / want.abs().max(f64::MIN_POSITIVE));
            }
        }
    }
    found.worst.sort_by(|a, b| b.0.total_cmp(&a.0));
    found
}

/// The three worst values off, with the row's inputs.
pub(super) fn worst_rows(
    model: &ModelUnderTest,
    samples: &[Record],
    columns: &[Vec<f64>],
    worst: &[(f64, usize, usize)],
) -> Vec<serde_json::Value> {
    let manifest = model.bundle.manifest();
    worst
        .iter()
        .take(3)
        .map(|&(_, i, o)| {
            let s = &samples[i];
            let inputs: serde_json::Map<String, serde_json::Value> = manifest
                .inputs
                .iter()
                .zip(&s.inputs)
                .map(|(f, v)| (f.name.clone(), v.to_json()))
                .collect();
            json!({
                "id": s.id,
                "output": slots(manifest)[o].name,
                "served": columns[o][i],
                "expected": expected(manifest, s, o),
                "inputs": inputs,
                "curl": model.client.curl(manifest, &s.inputs),
            })
        })
        .collect()
}

/// The key of the batch mode's error distribution in the suite's details.
pub(crate) const TOLERANCE_HISTOGRAM: &str = "tolerance_histogram";

/// Values per decade of |served − expected| over the row's allowance
/// (`abs + rel·|expected|`), `[[exponent, count], ...]`: exponent 0 and
/// above is at or beyond the tolerance. An exact match counts in the lowest
/// decade; a missing answer is left out.
pub(super) fn tolerance_histogram(
    manifest: &preflight_bundle::Manifest,
    tolerance: Tolerance,
    samples: &[Record],
    served: &[Vec<f64>],
) -> serde_json::Value {
    const LOWEST: i32 = -6;
    let mut counts = std::collections::BTreeMap::<i32, u64>::new();
    let slots = slots(manifest);
    for (o, column) in served.iter().enumerate() {
        // A label is right or wrong, not near.
        if slots[o].kind == SlotKind::Label {
            continue;
        }
        for (sample, &got) in samples.iter().zip(column) {
            let want = expected(manifest, sample, o);
            let share = (got - want).abs() / tolerance.allowance(want).max(f64::MIN_POSITIVE);
            if share.is_finite() {
                let decade = if share > 0.0 {
                    (share.log10().floor() as i32).max(LOWEST)
                } else {
                    LOWEST
                };
                *counts.entry(decade).or_default() += 1;
            }
        }
    }
    json!(
        counts
            .into_iter()
            .map(|(d, c)| json!([d, c]))
            .collect::<Vec<_>>()
    )
}
