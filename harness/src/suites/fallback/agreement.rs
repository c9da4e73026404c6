//! The served fallback against the bundle's own: on rows generated to cover
//! what the hold-out may not (every declared category, the null of each
//! nullable input, the bounds of each numeric input), and on the samples'
//! `fallback_outputs`, the training process's own fallback predictions.

use preflight_bundle::{Datatype, Fallback, Manifest, Record, Tolerance, Value};
use serde_json::json;

use super::super::explain::{self, show};
use super::super::{CHUNK, ModelUnderTest};
use crate::client::{FallbackReason, Unreachable, params};
use crate::report::{Check, Skip};

/// The fallback computes in f64 and the answer is FP32: a few ulps at the
/// largest outputs, far below any difference between two fits.
pub(super) const TOLERANCE: Tolerance = Tolerance {
    abs: 1e-3,
    rel: 1e-5,
};
/// Differing rows a message names.
const NAMED: usize = 3;

/// A generated row and what it changes: `vehicle = walk`.
struct Generated {
    label: String,
    row: Vec<Value>,
}

/// Each declared category, the null of each nullable input and the bounds
/// of each numeric input, one change at a time on `base`.
fn generated(manifest: &Manifest, base: &[Value]) -> Vec<Generated> {
    let mut rows = Vec::new();
    for (i, input) in manifest.inputs.iter().enumerate() {
        let mut values: Vec<Value> = Vec::new();
        if let Some(categories) = &input.categories {
            values.extend(categories.iter().map(|c| Value::Text(c.clone())));
        }
        if input.nullable {
            values.push(Value::Null);
        }
        for bound in [input.min, input.max].into_iter().flatten() {
            values.push(match input.datatype {
                Datatype::Fp16 | Datatype::Fp32 | Datatype::Fp64 => Value::Float(bound),
                _ => Value::Int(bound as i64),
            });
        }
        for value in values {
            let mut row = base.to_vec();
            row[i] = value;
            let label = format!("{} = {}", input.name, show(&row[i]));
            rows.push(Generated { label, row });
        }
    }
    rows
}

/// The fallback's output, in manifest order.
fn output_index(manifest: &Manifest, fallback: &Fallback) -> usize {
    manifest.output(fallback.output()).map_or(0, |(o, _)| o)
}

/// The fallback's answers for `rows`, forced with `deadline_ms = 0`, or why
/// there are none.
async fn forced(
    model: &ModelUnderTest,
    rows: &[&[Value]],
    output: usize,
) -> Result<Result<Vec<f64>, String>, Unreachable> {
    let manifest = model.bundle.manifest();
    let mut served = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(CHUNK) {
        let parameters = Some(json!({ params::DEADLINE_MS: 0 }));
        let answer = model.client.infer(manifest, chunk, parameters).await?;
        if !answer.ok() {
            return Ok(Err(format!("answered {}", answer.describe())));
        }
        if answer.fallback != Some(FallbackReason::Deadline) {
            return Ok(Err(format!(
                "with deadline_ms = 0 the answer's fallback reason is {:?}",
                answer.fallback
            )));
        }
        served.extend(answer.outputs.get(output).cloned().unwrap_or_default());
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
    let rows = generated(manifest, &base.inputs);
    let borrowed: Vec<&[Value]> = rows.iter().map(|g| g.row.as_slice()).collect();
    let served = match forced(model, &borrowed, output_index(manifest, fallback)).await? {
        Ok(served) => served,
        Err(why) => return Ok(Check::new(NAME, false, why)),
    };
    let differing: Vec<String> = rows
        .iter()
        .zip(&served)
        .filter_map(|(g, &got)| {
            let want = fallback.predict(&g.row);
            (!TOLERANCE.accepts(got, want)).then(|| {
                format!(
                    "{}: '{}' served {got:.4}, fallback.json gives {want:.4}",
                    g.label,
                    fallback.output()
                )
            })
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
    let output = output_index(manifest, fallback);
    let recorded: Vec<(&Record, f64)> = model
        .samples
        .iter()
        .flatten()
        .filter_map(|s| {
            let value = s.fallback_outputs.as_ref()?.get(output)?.as_f64()?;
            Some((s, value))
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
    let served = match forced(model, &rows, output).await? {
        Ok(served) => served,
        Err(why) => return Ok(Check::new(NAME, false, why)),
    };
    let mut bundle_off = Vec::new();
    let mut endpoint_off = Vec::new();
    for ((sample, want), got) in recorded.iter().zip(&served) {
        let computed = fallback.predict(&sample.inputs);
        if !TOLERANCE.accepts(computed, *want) {
            bundle_off.push((*sample, computed, *want));
        } else if !TOLERANCE.accepts(*got, *want) {
            endpoint_off.push((*sample, *got, *want));
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
            let mut why = vec![differing(stage, fallback.output(), off, side, total)];
            let failing: Vec<&[Value]> = off.iter().map(|(s, ..)| s.inputs.as_slice()).collect();
            why.extend(explain::shared(manifest, &failing, &all));
            why
        })
        .collect();
    Ok(Check::new(NAME, false, why.join("; ")))
}

/// `training → fallback.json: 'eta_minutes' differs in 44 of 500 samples;
/// row ...`: the samples off at one stage, `(sample, got, want)`.
fn differing(
    stage: &str,
    output: &str,
    off: &[(&Record, f64, f64)],
    side: &str,
    total: usize,
) -> String {
    let rows: Vec<String> = off
        .iter()
        .map(|(s, got, want)| {
            format!(
                "row '{}': {side} {got:.4}, the training process {want:.4}",
                s.id
            )
        })
        .collect();
    format!(
        "{stage}: '{output}' differs in {} of {total} samples; {}",
        off.len(),
        named(&rows)
    )
}

fn rows_of<'r>(recorded: &[(&'r Record, f64)]) -> Vec<&'r [Value]> {
    recorded.iter().map(|(s, _)| s.inputs.as_slice()).collect()
}

/// The first few of a list, and how many more.
fn named(items: &[String]) -> String {
    let mut text = items[..items.len().min(NAMED)].join("; ");
    if items.len() > NAMED {
        text.push_str(&format!("; and {} more", items.len() - NAMED));
    }
    text
}
