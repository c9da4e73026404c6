//! The served fallback against the bundle's own: on rows generated to cover
//! what the hold-out may not (every declared category, the null of each
//! nullable input, the bounds of each numeric input), and on the samples'
//! `fallback_outputs`, the training process's own fallback predictions.

use preflight_bundle::{Datatype, Fallback, Manifest, Record, Tolerance, Value};
use serde_json::json;

use super::super::explain::{self, show};
use super::super::parity::DEADLINE_RETRIES;
use super::super::{CHUNK, ModelUnderTest};
use crate::client::{FallbackReason, Unreachable, params};
use crate::report::{Check, Skip};
use crate::slots::{self, Slot};

/// The fallback computes in f64 and the answer is FP32: a few ulps at the
/// largest outputs, far below any difference between two fits.
pub(super) const TOLERANCE: Tolerance = Tolerance {
    abs: 1e-3,
    rel: 1e-5,
};
/// Differing rows a message names.
const NAMED: usize = 3;

/// A generated row and what it changes: `vehicle = walk`.
pub(super) struct Generated {
    pub(super) label: String,
    /// The input changed, by its place in the manifest.
    pub(super) input: usize,
    pub(super) row: Vec<Value>,
}

/// Each declared category, the null of each nullable input and, with
/// `bounds`, the bounds of each numeric input, one change at a time on
/// `base`.
pub(super) fn generated(manifest: &Manifest, base: &[Value], bounds: bool) -> Vec<Generated> {
    let mut rows = Vec::new();
    for (i, input) in manifest.inputs.iter().enumerate() {
        let mut values: Vec<Value> = Vec::new();
        if let Some(categories) = &input.categories {
            values.extend(categories.iter().map(|c| Value::Text(c.clone())));
        }
        if input.nullable {
            values.push(Value::Null);
        }
        for bound in [input.min, input.max]
            .into_iter()
            .flatten()
            .filter(|_| bounds)
        {
            values.push(match input.datatype {
                Datatype::Fp16 | Datatype::Fp32 | Datatype::Fp64 => Value::Float(bound),
                _ => Value::Int(bound as i64),
            });
        }
        for value in values {
            let mut row = base.to_vec();
            row[i] = value;
            let label = format!("{} = {}", input.name, show(&row[i]));
            rows.push(Generated {
                label,
                input: i,
                row,
            });
        }
    }
    rows
}

/// The slots (`crate::slots`) the fallback predicts: its regression output,
/// or a classifier's probabilities in class order, as `Fallback::predict`
/// gives them.
pub(super) fn fallback_slots(manifest: &Manifest, fallback: &Fallback) -> Vec<Slot> {
    let output = manifest.output(fallback.output()).map_or(0, |(o, _)| o);
    slots::slots(manifest)
        .into_iter()
        .filter(|s| s.output == output)
        .collect()
}

/// The first slot where `got` and `want` differ beyond the tolerance.
fn first_off(got: &[f64], want: &[f64]) -> Option<usize> {
    (0..want.len()).find(|&k| !TOLERANCE.accepts(got.get(k).copied().unwrap_or(f64::NAN), want[k]))
}

/// Who answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// The fallback, forced with `deadline_ms = 0`.
    Fallback,
    /// The main model: an answer the fallback gave on `deadline` (a busy
    /// machine) is asked again, a few times, before it counts.
    Main,
}

/// The answers of `side` for `rows`, each row's values of the fallback's
/// slots, or why there are none.
pub(super) async fn answers(
    model: &ModelUnderTest,
    rows: &[&[Value]],
    fallback: &Fallback,
    side: Side,
) -> Result<Result<Vec<Vec<f64>>, String>, Unreachable> {
    let manifest = model.bundle.manifest();
    let all = slots::slots(manifest);
    let wanted: Vec<usize> = fallback_slots(manifest, fallback)
        .iter()
        .filter_map(|w| all.iter().position(|s| s == w))
        .collect();
    let parameters = (side == Side::Fallback).then(|| json!({ params::DEADLINE_MS: 0 }));
    let mut served = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(CHUNK) {
        let mut answer = model
            .client
            .infer(manifest, chunk, parameters.clone())
            .await?;
        for _ in 0..DEADLINE_RETRIES {
            if side == Side::Fallback || answer.fallback != Some(FallbackReason::Deadline) {
                break;
            }
            answer = model.client.infer(manifest, chunk, None).await?;
        }
        if !answer.ok() {
            return Ok(Err(format!("answered {}", answer.describe())));
        }
        match (side, answer.fallback) {
            (Side::Fallback, Some(FallbackReason::Deadline)) | (Side::Main, None) => {}
            (Side::Fallback, other) => {
                return Ok(Err(format!(
                    "with deadline_ms = 0 the answer's fallback reason is {other:?}"
                )));
            }
            (Side::Main, Some(reason)) => {
                return Ok(Err(format!(
                    "the main model did not answer: the fallback did, on {reason:?}"
                )));
            }
        }
        for i in 0..chunk.len() {
            let row = slots::row(&answer.outputs, i);
            served.push(wanted.iter().map(|&k| row[k]).collect());
        }
    }
    Ok(Ok(served))
}

/// The served fallback on generated rows against `fallback.json` computed here.
pub(super) async fn off_holdout(
    model: &ModelUnderTest,
    fallback: &Fallback,
) -> Result<Check, Unreachable> {
    const NAME: &str = "agrees with fallback.json off the hold-out";
    let manifest = model.bundle.manifest();
    let base = model
        .samples
        .as_ref()
        .and_then(|s| s.first())
        .or_else(|| model.holdout.as_ref().and_then(|h| h.first()));
    let Some(base) = base else {
        return Ok(Check::skipped(
            NAME,
            Skip::Missing,
            "needs a sample or hold-out row",
        ));
    };
    let rows = generated(manifest, &base.inputs, true);
    let borrowed: Vec<&[Value]> = rows.iter().map(|g| g.row.as_slice()).collect();
    let served = match answers(model, &borrowed, fallback, Side::Fallback).await? {
        Ok(served) => served,
        Err(why) => return Ok(Check::new(NAME, false, why)),
    };
    let names = fallback_slots(manifest, fallback);
    let differing: Vec<String> = rows
        .iter()
        .zip(&served)
        .filter_map(|(g, got)| {
            let want = fallback.predict(&g.row);
            let k = first_off(got, &want)?;
            Some(format!(
                "{}: '{}' served {:.4}, fallback.json gives {:.4}",
                g.label, names[k].name, got[k], want[k]
            ))
        })
        .collect();
    Ok(if differing.is_empty() {
        Check::new(
            NAME,
            true,
            format!(
                "{} rows, one change each on sample '{}' (every category, null and bound)",
                rows.len(),
                base.id
            ),
        )
    } else {
        Check::new(
            NAME,
            false,
            format!(
                "fallback.json → endpoint: {} of {} generated rows differ; {}",
                differing.len(),
                rows.len(),
                named(&differing)
            ),
        )
    })
}

/// The served fallback, and `fallback.json` itself, against the samples'
/// `fallback_outputs`: where they differ, which side left the training
/// process's fallback.
pub(super) async fn with_training(
    model: &ModelUnderTest,
    fallback: &Fallback,
) -> Result<Check, Unreachable> {
    const NAME: &str = "agrees with the training process";
    let manifest = model.bundle.manifest();
    let names = fallback_slots(manifest, fallback);
    let all = slots::slots(manifest);
    let recorded: Vec<(&Record, Vec<f64>)> = model
        .samples
        .iter()
        .flatten()
        .filter_map(|s| {
            let values = slots::values(manifest, s.fallback_outputs.as_ref()?);
            let want: Vec<f64> = names
                .iter()
                .filter_map(|w| all.iter().position(|s| s == w).map(|k| values[k]))
                .collect();
            want.iter().all(|x| !x.is_nan()).then_some((s, want))
        })
        .collect();
    if recorded.is_empty() {
        return Ok(Check::skipped(
            NAME,
            Skip::Missing,
            "samples.jsonl has no fallback_outputs",
        ));
    }
    let rows: Vec<&[Value]> = recorded.iter().map(|(s, _)| s.inputs.as_slice()).collect();
    let served = match answers(model, &rows, fallback, Side::Fallback).await? {
        Ok(served) => served,
        Err(why) => return Ok(Check::new(NAME, false, why)),
    };
    let mut bundle_off = Vec::new();
    let mut endpoint_off = Vec::new();
    for ((sample, want), got) in recorded.iter().zip(&served) {
        let computed = fallback.predict(&sample.inputs);
        if let Some(k) = first_off(&computed, want) {
            bundle_off.push((*sample, names[k].name.as_str(), computed[k], want[k]));
        } else if let Some(k) = first_off(got, want) {
            endpoint_off.push((*sample, names[k].name.as_str(), got[k], want[k]));
        }
    }
    if bundle_off.is_empty() && endpoint_off.is_empty() {
        return Ok(Check::new(
            NAME,
            true,
            format!(
                "{} samples' fallback_outputs within |Δ| <= {} + {}·|expected|",
                recorded.len(),
                TOLERANCE.abs,
                TOLERANCE.rel
            ),
        ));
    }
    let stages = [
        (
            "training → fallback.json",
            bundle_off,
            "fallback.json gives",
        ),
        ("fallback.json → endpoint", endpoint_off, "served"),
    ];
    let all = rows_of(&recorded);
    let why: Vec<String> = stages
        .iter()
        .filter(|(_, off, _)| !off.is_empty())
        .flat_map(|(stage, off, side)| {
            let total = recorded.len();
            let mut why = vec![differing(stage, off, side, total)];
            let failing: Vec<&[Value]> = off.iter().map(|(s, ..)| s.inputs.as_slice()).collect();
            why.extend(explain::shared(manifest, &failing, &all));
            why
        })
        .collect();
    Ok(Check::new(NAME, false, why.join("; ")))
}

/// `training → fallback.json: 'eta_minutes' differs in 44 of 500 samples;
/// row ...`: the samples off at one stage, `(sample, slot, got, want)`.
fn differing(stage: &str, off: &[(&Record, &str, f64, f64)], side: &str, total: usize) -> String {
    let rows: Vec<String> = off
        .iter()
        .map(|(s, _, got, want)| {
            format!(
                "row '{}': {side} {got:.4}, the training process {want:.4}",
                s.id
            )
        })
        .collect();
    let mut outputs: Vec<&str> = off.iter().map(|(_, name, ..)| *name).collect();
    outputs.dedup();
    format!(
        "{stage}: '{}' differs in {} of {total} samples; {}",
        outputs.join("', '"),
        off.len(),
        named(&rows)
    )
}

fn rows_of<'r>(recorded: &[(&'r Record, Vec<f64>)]) -> Vec<&'r [Value]> {
    recorded.iter().map(|(s, _)| s.inputs.as_slice()).collect()
}

/// The first few of a list, and how many more.
pub(super) fn named(items: &[String]) -> String {
    let mut text = items[..items.len().min(NAMED)].join("; ");
    if items.len() > NAMED {
        text.push_str(&format!("; and {} more", items.len() - NAMED));
    }
    text
}
