//! `parity`: every verification sample through the endpoint, in batches and
//! one row per request, against the training process's outputs within the
//! contract's tolerance; and where a row diverges, at which stage.

use preflight_bundle::Record;
use serde_json::json;

use super::{CHUNK, ModelUnderTest, Suite, rows, skipped};
use crate::client::{Answer, Unreachable, expected};
use crate::report::{Check, SuiteReport};

/// One row per request for every this many samples.
const SINGLE_ROW_STEP: usize = 10;

pub(super) async fn run(model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    let manifest = model.bundle.manifest();
    let (Some(samples), Some(tolerance)) = (&model.samples, manifest.contract.parity) else {
        return Ok(skipped(
            Suite::Parity,
            "needs samples.jsonl and contract.parity",
        ));
    };
    let mut checks = Vec::new();
    let mut metrics = std::collections::BTreeMap::new();
    let mut details = serde_json::Map::new();
    let every = samples.len();
    for mode in ["batch", "single row"] {
        // Batches carry every sample; one row per request, every tenth
        // sample, which is enough to see an endpoint that answers a row
        // alone differently, at a tenth of the round trips.
        let step = if mode == "batch" { 1 } else { SINGLE_ROW_STEP };
        let positions: Vec<usize> = (0..every).step_by(step).collect();
        let chosen: Vec<Record> = positions.iter().map(|&i| samples[i].clone()).collect();
        let samples = chosen.as_slice();
        let mut served: Vec<Vec<f64>> =
            vec![Vec::with_capacity(samples.len()); manifest.outputs.len()];
        let mut failed_requests: Vec<String> = Vec::new();
        let mut fallback_rows = 0;
        let size = if mode == "batch" { CHUNK } else { 1 };
        for chunk in samples.chunks(size) {
            let records: Vec<&Record> = chunk.iter().collect();
            let answer: Answer = model.client.infer(manifest, &rows(&records), None).await?;
            if answer.ok() {
                if answer.fallback.is_some() {
                    fallback_rows += chunk.len();
                }
                for (column, values) in served.iter_mut().zip(answer.outputs) {
                    column.extend(values);
                }
            } else {
                failed_requests.push(format!(
                    "rows {}..{}: {}",
                    chunk[0].id,
                    chunk[chunk.len() - 1].id,
                    answer.describe()
                ));
                for column in &mut served {
                    column.extend(std::iter::repeat_n(f64::NAN, chunk.len()));
                }
            }
        }
        let name = format!("parity ({mode})");
        let mut passed = 0;
        let mut max_abs: f64 = 0.0;
        let mut max_rel: f64 = 0.0;
        let mut worst: Vec<(f64, usize, usize)> = Vec::new();
        let mut stages = (0, 0);
        for (o, column) in served.iter().enumerate() {
            for (i, (sample, &got)) in samples.iter().zip(column).enumerate() {
                let want = expected(sample, o);
                let abs = (got - want).abs();
                if tolerance.accepts(got, want) {
                    passed += 1;
                } else {
                    worst.push((if abs.is_nan() { f64::INFINITY } else { abs }, i, o));
                    match model.artifact.as_ref().and_then(|a| a.as_ref().ok()) {
                        Some(artifact) if tolerance.accepts(artifact[o][positions[i]], want) => {
                            stages.1 += 1
                        }
                        Some(_) => stages.0 += 1,
                        None => {}
                    }
                }
                if abs.is_finite() {
                    max_abs = max_abs.max(abs);
                    max_rel = max_rel.max(abs / want.abs().max(f64::MIN_POSITIVE));
                }
            }
        }
        let total = samples.len() * manifest.outputs.len();
        worst.sort_by(|a, b| b.0.total_cmp(&a.0));
        let worst_rows: Vec<serde_json::Value> = worst
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
                    "output": manifest.outputs[o].name,
                    "served": served[o][i],
                    "expected": expected(s, o),
                    "inputs": inputs,
                })
            })
            .collect();
        let key = if mode == "batch" { "batch" } else { "single" };
        if mode == "batch" {
            details.insert(
                "error_histogram".to_owned(),
                error_histogram(samples, &served),
            );
        }
        metrics.insert(format!("{key}_passed"), passed as f64);
        metrics.insert(format!("{key}_max_abs_error"), max_abs);
        metrics.insert(format!("{key}_max_rel_error"), max_rel);
        details.insert(format!("{key}_worst_rows"), json!(worst_rows));
        let message = if passed == total {
            format!(
                "{passed} of {total} within |Δ| <= {} + {}·|expected|; max |Δ| {max_abs:.3e}",
                tolerance.abs, tolerance.rel
            )
        } else {
            let mut why = vec![format!(
                "{passed} of {total} within tolerance; max |Δ| {max_abs:.3e}, max relative \
                    {max_rel:.3e}"
            )];
            if let Some(&(_, i, o)) = worst.first() {
                why.push(format!(
                    "worst row '{}': served {}, expected {}",
                    samples[i].id,
                    served[o][i],
                    expected(&samples[i], o)
                ));
            }
            match stages {
                (0, 0) if model.artifact.is_none() => why.push(
                    "stage unknown: the artifact was \
                    not run"
                        .to_owned(),
                ),
                (0, 0) => {}
                (0, _) => why.push(
                    "divergence starts at artifact → endpoint: the artifact itself \
                    matches training"
                        .to_owned(),
                ),
                (_, 0) => why.push(
                    "divergence starts at training → artifact: the artifact itself \
                    disagrees with training"
                        .to_owned(),
                ),
                (a, b) => why.push(format!(
                    "{a} rows diverge at training → artifact, {b} at \
                    artifact → endpoint"
                )),
            }
            if fallback_rows > 0 {
                why.push(format!(
                    "{fallback_rows} rows were answered by the fallback, not the model"
                ));
            }
            if !failed_requests.is_empty() {
                why.push(format!(
                    "{} requests failed, first: {}",
                    failed_requests.len(),
                    failed_requests[0]
                ));
            }
            why.join("; ")
        };
        checks.push(Check::new(&name, passed == total, message));
    }
    let mut report = SuiteReport::new(Suite::Parity.name(), checks);
    report.metrics = metrics;
    report.details = serde_json::Value::Object(details);
    Ok(report)
}

/// Rows per decade of |served − expected|, `[[exponent, count], ...]`; an
/// exact match counts in the lowest decade, a missing answer is left out.
fn error_histogram(samples: &[Record], served: &[Vec<f64>]) -> serde_json::Value {
    const LOWEST: i32 = -9;
    let mut counts = std::collections::BTreeMap::<i32, u64>::new();
    for (o, column) in served.iter().enumerate() {
        for (sample, &got) in samples.iter().zip(column) {
            let error = (got - expected(sample, o)).abs();
            if error.is_finite() {
                let decade = if error > 0.0 {
                    (error.log10().floor() as i32).max(LOWEST)
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
