//! `parity`: every verification sample through the endpoint, in batches and
//! one row per request, and every probe row at the trees' split thresholds,
//! against the training process's outputs within the contract's tolerance;
//! and where a row diverges, at which stage.

mod compare;
mod why;

use preflight_bundle::{Record, Tolerance};
use serde_json::json;

pub(crate) use self::compare::TOLERANCE_HISTOGRAM;
use self::compare::{Comparison, compare, tolerance_histogram, worst_rows};
use super::descriptor::{Chart, Descriptor, Need};
use super::{CHUNK, ModelUnderTest, Suite, rows, skipped};
use crate::client::{Answer, FallbackReason, Unreachable};
use crate::report::{Check, Skip, SuiteReport};
use crate::slots::slots;
use preflight_bundle::Split;

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
    /// Every probe row (`probes.jsonl`), `CHUNK` rows per request: where a
    /// float32 split answers otherwise than training's, which random
    /// samples rarely reach.
    Probes,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Batch, Mode::SingleRow, Mode::Probes];

    /// As the check names it: `parity (batch)`.
    fn label(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::SingleRow => "single row",
            Mode::Probes => "probes",
        }
    }

    /// The prefix of its metrics and details: `batch_passed`.
    fn key(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::SingleRow => "single",
            Mode::Probes => "probes",
        }
    }

    /// Which rows go: every `step`-th.
    fn step(self) -> usize {
        match self {
            Mode::Batch | Mode::Probes => 1,
            Mode::SingleRow => SINGLE_ROW_STEP,
        }
    }

    fn rows_per_request(self) -> usize {
        match self {
            Mode::Batch | Mode::Probes => CHUNK,
            Mode::SingleRow => 1,
        }
    }

    /// The rows the mode sends, and the artifact's own outputs for them;
    /// `None` for probes where the bundle has none.
    fn rows(self, model: &ModelUnderTest) -> Result<Rows<'_>, &str> {
        let (records, artifact) = match self {
            Mode::Batch | Mode::SingleRow => (
                model.samples.as_deref().ok_or("needs samples.jsonl")?,
                &model.artifact,
            ),
            Mode::Probes => {
                let probes = model.probes.as_ref().map_err(String::as_str)?;
                (probes.rows.as_slice(), &probes.artifact)
            }
        };
        let artifact = artifact.as_ref().and_then(|a| a.as_deref().ok());
        Ok((records, artifact))
    }
}

/// A mode's rows and, where it ran, the artifact's outputs for them.
type Rows<'a> = (&'a [Record], Option<&'a [Vec<f64>]>);

pub(super) async fn run(model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    let manifest = model.bundle.manifest();
    let (Some(_), Some(tolerance)) = (&model.samples, manifest.contract.parity) else {
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
        let name = format!("parity ({})", mode.label());
        let (rows, artifact) = match mode.rows(model) {
            Ok(rows) => rows,
            Err(why) => {
                checks.push(Check::skipped(&name, Skip::Missing, why));
                continue;
            }
        };
        let positions: Vec<usize> = (0..rows.len()).step_by(mode.step()).collect();
        let chosen: Vec<Record> = positions.iter().map(|&i| rows[i].clone()).collect();
        let served = serve(model, &chosen, mode).await?;
        versions.extend(served.versions.iter().cloned());
        let found = compare(
            model,
            tolerance,
            &chosen,
            (&positions, artifact),
            &served.columns,
        );
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
        let message = say(model, (tolerance, mode), &chosen, &served, &found).await?;
        checks.push(Check::new(&name, found.passed == found.total, message));
    }
    checks.push(version_check(model.bundle.version(), &versions));
    let mut report = SuiteReport::new(Suite::Parity.name(), checks);
    report.metrics = metrics;
    report.details = serde_json::Value::Object(details);
    Ok(report)
}

/// What a mode's check says: how close where it passed, why where it failed,
/// and for the probes which splits they reached and where they came from.
async fn say(
    model: &ModelUnderTest,
    (tolerance, mode): (Tolerance, Mode),
    chosen: &[Record],
    served: &Served,
    found: &Comparison,
) -> Result<String, Unreachable> {
    let derived = mode == Mode::Probes && model.probes.as_ref().is_ok_and(|p| p.derived);
    let mut message = if found.passed == found.total {
        agreed(tolerance, chosen, found)
    } else {
        why::why(model, tolerance, (chosen, derived), served, found).await?
    };
    if mode == Mode::Probes {
        message.push_str(&splits(chosen, found));
    }
    if derived {
        message.insert_str(0, DERIVED);
    }
    Ok(message)
}

/// What the probes check says first when the harness derived the probes.
const DERIVED: &str = "derived from model.onnx (the bundle has no probes.jsonl), against the \
    artifact's own outputs: ";

/// Which splits the probes reached, and the one beside the worst probe.
fn splits(probes: &[Record], found: &Comparison) -> String {
    let reached: std::collections::BTreeSet<(&str, u64, u64)> = probes
        .iter()
        .filter_map(|r| r.probe.as_ref())
        .map(|s| (s.input.as_str(), s.column, s.threshold.to_bits()))
        .collect();
    let inputs: std::collections::BTreeSet<&str> = reached.iter().map(|s| s.0).collect();
    let inputs: Vec<&str> = inputs.into_iter().collect();
    let mut text = format!(
        "; {} probe rows at {} thresholds on {}",
        probes.len(),
        reached.len(),
        inputs.join(", ")
    );
    let worst = found
        .worst
        .first()
        .and_then(|&(_, i, _)| probes[i].probe.as_ref());
    if let Some(Split {
        input,
        column,
        threshold,
    }) = worst
    {
        text.push_str(&format!(
            "; the worst sits beside the split at {threshold} on the trees' column {column} \
            ('{input}')"
        ));
    }
    text
}

/// What a mode that passed says: how close, and the near ties not counted.
fn agreed(tolerance: Tolerance, chosen: &[Record], found: &Comparison) -> String {
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
