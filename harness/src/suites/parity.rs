//! `parity`: every verification sample through the endpoint, in batches and
//! one row per request, against the training process's outputs within the
//! contract's tolerance; and where a row diverges, at which stage.

use preflight_bundle::{Record, Tolerance};
use serde_json::json;

use super::descriptor::{Chart, Descriptor, Need};
use super::{CHUNK, ModelUnderTest, Suite, explain, rows, skipped};
use crate::client::{Answer, FallbackReason, Unreachable, expected};
use crate::report::{Check, Skip, SuiteReport};
use crate::slots::{SlotKind, agrees, near_tie, slots};

/// What the rest of the harness knows of the suite (`Suite::descriptor`).
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    needs: &[Need::Artifact],
    chart: Some(Chart::Parity),
    ..Descriptor::FUNCTIONAL
};

/// One row per request for every this many samples.
const SINGLE_ROW_STEP: usize = 10;
/// How many times a request the fallback answered on `deadline` is sent again.
pub(super) const DEADLINE_RETRIES: usize = 2;

/// How the samples are sent: each mode is one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every sample, `CHUNK` rows per request.
    Batch,
    /// Every tenth sample, one row per request: enough to see an endpoint
    /// that answers a row alone differently, at a tenth of the round trips.
    SingleRow,
}

impl Mode {
    const ALL: [Mode; 2] = [Mode::Batch, Mode::SingleRow];

    /// As the check names it: `parity (batch)`.
    fn label(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::SingleRow => "single row",
        }
    }

    /// The prefix of its metrics and details: `batch_passed`.
    fn key(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::SingleRow => "single",
        }
    }

    /// Which samples go: every `step`-th.
    fn step(self) -> usize {
        match self {
            Mode::Batch => 1,
            Mode::SingleRow => SINGLE_ROW_STEP,
        }
    }

    fn rows_per_request(self) -> usize {
        match self {
            Mode::Batch => CHUNK,
            Mode::SingleRow => 1,
        }
    }
}

pub(super) async fn run(model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    let manifest = model.bundle.manifest();
    let (Some(samples), Some(tolerance)) = (&model.samples, manifest.contract.parity) else {
        return Ok(skipped(
            Suite::Parity,
            Skip::Missing,
            super::needs(&[
                ("samples.jsonl", model.samples.is_some()),
                ("contract.parity", manifest.contract.parity.is_some()),
            ]),
        ));
    };
    let mut checks = Vec::new();
    let mut metrics = std::collections::BTreeMap::new();
    let mut details = serde_json::Map::new();
    let mut versions = std::collections::BTreeSet::new();
    for mode in Mode::ALL {
        let positions: Vec<usize> = (0..samples.len()).step_by(mode.step()).collect();
        let chosen: Vec<Record> = positions.iter().map(|&i| samples[i].clone()).collect();
        let served = serve(model, &chosen, mode).await?;
        versions.extend(served.versions.iter().cloned());
        let found = compare(model, tolerance, &chosen, &positions, &served.columns);
        let key = mode.key();
        if mode == Mode::Batch {
            let histogram = tolerance_histogram(manifest, tolerance, &chosen, &served.columns);
            details.insert(TOLERANCE_HISTOGRAM.to_owned(), histogram);
        }
        metrics.insert(format!("{key}_passed"), found.passed as f64);
        metrics.insert(format!("{key}_max_abs_error"), found.max_abs);
        metrics.insert(format!("{key}_max_rel_error"), found.max_rel);
        let retries = served.deadline_retries as f64;
        metrics.insert(format!("{key}_deadline_retries"), retries);
        let worst = worst_rows(model, &chosen, &served.columns, &found.worst);
        details.insert(format!("{key}_worst_rows"), json!(worst));
        if manifest.classifier().is_some() {
            metrics.insert(format!("{key}_near_ties"), found.near_ties.len() as f64);
        }
        let message = if found.passed == found.total {
            let mut message = format!(
                "{} of {} within |Δ| <= {} + {}·|expected|; max |Δ| {:.3e}",
                found.passed, found.total, tolerance.abs, tolerance.rel, found.max_abs
            );
            if let Some(&first) = found.near_ties.first() {
                message.push_str(&format!(
                    "; {} labels differ where training's top two probabilities lie within the \
                        tolerance (a near tie; first row '{}'), which is not counted",
                    found.near_ties.len(),
                    chosen[first].id
                ));
            }
            message
        } else {
            explain(model, tolerance, &chosen, &served, &found).await?
        };
        let name = format!("parity ({})", mode.label());
        checks.push(Check::new(&name, found.passed == found.total, message));
    }
    checks.push(version_check(model.bundle.version(), &versions));
    let mut report = SuiteReport::new(Suite::Parity.name(), checks);
    report.metrics = metrics;
    report.details = serde_json::Value::Object(details);
    Ok(report)
}

/// What the endpoint answered for the chosen samples.
struct Served {
    /// One column per output, NaN where a request failed.
    columns: Vec<Vec<f64>>,
    failed_requests: Vec<String>,
    fallback_rows: usize,
    /// Requests sent again because the fallback answered on `deadline`.
    deadline_retries: usize,
    /// Every `model_version` the answers gave.
    versions: std::collections::BTreeSet<String>,
}

/// The version that answered is the one asked for: a server that answers
/// version 2's requests with version 1 fails parity for a reason of its own.
fn version_check(asked: u64, answered: &std::collections::BTreeSet<String>) -> Check {
    const NAME: &str = "served version";
    let asked = asked.to_string();
    let others: Vec<&str> = answered
        .iter()
        .filter(|v| **v != asked)
        .map(String::as_str)
        .collect();
    match (answered.is_empty(), others.as_slice()) {
        (true, _) => Check::new(NAME, true, "the answers give no model_version to check"),
        (false, []) => Check::new(NAME, true, format!("every answer is version {asked}")),
        (false, _) => Check::new(
            NAME,
            false,
            format!(
                "asked for version {asked}, answered as model_version {}: the endpoint serves \
                another version than the one verified",
                others.join(", ")
            ),
        ),
    }
}

async fn serve(
    model: &ModelUnderTest,
    samples: &[Record],
    mode: Mode,
) -> Result<Served, Unreachable> {
    let manifest = model.bundle.manifest();
    let mut served = Served {
        columns: vec![Vec::with_capacity(samples.len()); slots(manifest).len()],
        failed_requests: Vec::new(),
        fallback_rows: 0,
        deadline_retries: 0,
        versions: std::collections::BTreeSet::new(),
    };
    for chunk in samples.chunks(mode.rows_per_request()) {
        let records: Vec<&Record> = chunk.iter().collect();
        let mut answer: Answer = model.client.infer(manifest, &rows(&records), None).await?;
        // An answer from the fallback on `deadline` says how busy the machine
        // was, not what the model computes: asked again, a few times, before
        // it counts. A model that misses its deadline every time still fails.
        for _ in 0..DEADLINE_RETRIES {
            if answer.fallback != Some(FallbackReason::Deadline) {
                break;
            }
            served.deadline_retries += 1;
            answer = model.client.infer(manifest, &rows(&records), None).await?;
        }
        served.versions.extend(answer.model_version.clone());
        if answer.ok() {
            if answer.fallback.is_some() {
                served.fallback_rows += chunk.len();
            }
            for (column, values) in served.columns.iter_mut().zip(answer.outputs) {
                column.extend(values);
            }
        } else {
            served.failed_requests.push(format!(
                "rows {}..{}: {}",
                chunk[0].id,
                chunk[chunk.len() - 1].id,
                answer.describe()
            ));
            for column in &mut served.columns {
                column.extend(std::iter::repeat_n(f64::NAN, chunk.len()));
            }
        }
    }
    Ok(served)
}

/// How the served answers compare with the training process's.
struct Comparison {
    passed: usize,
    total: usize,
    max_abs: f64,
    max_rel: f64,
    /// `(|Δ|, sample, slot)` of every value off, the worst first.
    worst: Vec<(f64, usize, usize)>,
    /// Values off that the artifact already gets wrong (training → artifact),
    /// and that it gets right (artifact → endpoint).
    stages: (usize, usize),
    /// Samples whose served label differs from training's where training's
    /// top two probabilities lie within the tolerance: float rounding may
    /// name either class, so they are reported, not failed.
    near_ties: Vec<usize>,
}

fn compare(
    model: &ModelUnderTest,
    tolerance: Tolerance,
    samples: &[Record],
    positions: &[usize],
    columns: &[Vec<f64>],
) -> Comparison {
    let manifest = model.bundle.manifest();
    let slots = slots(manifest);
    let artifact = model.artifact.as_ref().and_then(|a| a.as_ref().ok());
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
fn worst_rows(
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

/// Why a mode failed: how many values are off and in which outputs, the
/// worst, where the divergence starts, what the failing rows share, which
/// input explains it, and what else went wrong.
async fn explain(
    model: &ModelUnderTest,
    tolerance: Tolerance,
    samples: &[Record],
    served: &Served,
    found: &Comparison,
) -> Result<String, Unreachable> {
    let manifest = model.bundle.manifest();
    if served.columns.iter().flatten().all(|v| v.is_nan()) {
        let mut why = vec!["nothing was served: no request got a readable answer".to_owned()];
        if let Some(first) = served.failed_requests.first() {
            why.push(format!(
                "{} requests failed, first: {first}",
                served.failed_requests.len()
            ));
        }
        return Ok(why.join("; "));
    }
    let mut why = vec![format!(
        "{} of {} within tolerance; max |Δ| {:.3e}, max relative {:.3e}",
        found.passed, found.total, found.max_abs, found.max_rel
    )];
    let outputs: Vec<String> = slots(manifest)
        .iter()
        .enumerate()
        .filter_map(|(o, slot)| {
            let off = found.worst.iter().filter(|w| w.2 == o).count();
            (off > 0).then(|| format!("'{}' off in {off} rows", slot.name))
        })
        .collect();
    why.push(outputs.join(", "));
    if let Some(&(_, i, o)) = found.worst.first() {
        why.push(format!(
            "worst row '{}': '{}' served {:.6}, expected {:.6}",
            samples[i].id,
            slots(manifest)[o].name,
            served.columns[o][i],
            expected(manifest, &samples[i], o)
        ));
    }
    why.extend(stage(model, found.stages));
    let failing = failing_rows(found);
    let failing_inputs: Vec<&[preflight_bundle::Value]> = failing
        .iter()
        .map(|&i| samples[i].inputs.as_slice())
        .collect();
    let all: Vec<&[preflight_bundle::Value]> =
        samples.iter().map(|s| s.inputs.as_slice()).collect();
    why.extend(explain::shared(manifest, &failing_inputs, &all));
    if found.stages.0 == 0 && found.stages.1 > 0 {
        why.extend(attribution(model, tolerance, samples, &failing).await?);
    }
    if served.fallback_rows > 0 {
        why.push(format!(
            "{} rows were answered by the fallback, not the model",
            served.fallback_rows
        ));
    }
    if let Some(first) = served.failed_requests.first() {
        why.push(format!(
            "{} requests failed, first: {first}",
            served.failed_requests.len()
        ));
    }
    Ok(why.join("; "))
}

/// Where the divergence starts, by whether the artifact itself agrees.
fn stage(model: &ModelUnderTest, stages: (usize, usize)) -> Option<String> {
    match stages {
        (0, 0) if model.artifact.is_none() => {
            Some("stage unknown: the artifact was not run".to_owned())
        }
        (0, 0) => None,
        (0, _) => Some(
            "divergence starts at artifact → endpoint: the artifact itself matches training"
                .to_owned(),
        ),
        (_, 0) => Some(
            "divergence starts at training → artifact: the artifact itself disagrees with \
            training"
                .to_owned(),
        ),
        (a, b) => Some(format!(
            "{a} rows diverge at training → artifact, {b} at artifact → endpoint"
        )),
    }
}

/// The samples with a value off, each once, worst first.
fn failing_rows(found: &Comparison) -> Vec<usize> {
    let mut rows = Vec::new();
    for &(_, i, _) in &found.worst {
        if !rows.contains(&i) {
            rows.push(i);
        }
    }
    rows
}

/// Which input brings the worst row back when changed alone to the value of
/// the nearest sample that passes.
async fn attribution(
    model: &ModelUnderTest,
    tolerance: Tolerance,
    samples: &[Record],
    failing: &[usize],
) -> Result<Option<String>, Unreachable> {
    let Some(&worst) = failing.first() else {
        return Ok(None);
    };
    let neighbour = (1..samples.len())
        .flat_map(|d| [worst.checked_sub(d), Some(worst + d)])
        .flatten()
        .find(|i| *i < samples.len() && !failing.contains(i));
    let Some(neighbour) = neighbour else {
        return Ok(None);
    };
    let (row, other) = (&samples[worst], &samples[neighbour]);
    let found = explain::attribute(model, row, other, tolerance).await?;
    Ok(found.map(|inputs| match inputs.as_slice() {
        [] => format!(
            "no single input explains row '{}': sent again with each input in turn taken from \
            row '{}', which passes, it still diverges",
            row.id, other.id
        ),
        names => format!(
            "'{}' explains row '{}': sent again with it taken from row '{}', which passes, the \
            endpoint agrees with the artifact",
            names.join("', '"),
            row.id,
            other.id
        ),
    }))
}

/// The key of the batch mode's error distribution in the suite's details.
pub(crate) const TOLERANCE_HISTOGRAM: &str = "tolerance_histogram";

/// Values per decade of |served − expected| over the row's allowance
/// (`abs + rel·|expected|`), `[[exponent, count], ...]`: exponent 0 and
/// above is at or beyond the tolerance. An exact match counts in the lowest
/// decade; a missing answer is left out.
fn tolerance_histogram(
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
