//! Why a mode failed, in words a release manager can act on.

use preflight_bundle::{Record, Tolerance};

use super::Served;
use super::compare::Comparison;
use crate::client::{Unreachable, expected};
use crate::slots::slots;
use crate::suites::{ModelUnderTest, explain};

/// Why a mode failed: how many values are off and in which outputs, the
/// worst, where the divergence starts, what the failing rows share, which
/// input explains it, and what else went wrong. `derived`: the rows'
/// expected outputs are the artifact's own, not training's.
pub(super) async fn why(
    model: &ModelUnderTest,
    tolerance: Tolerance,
    (samples, derived): (&[Record], bool),
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
    let mut why = what_is_off(manifest, samples, served, found);
    why.extend(stage(model, found.stages, derived));
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

/// How many values are off, in which outputs, and the worst.
fn what_is_off(
    manifest: &preflight_bundle::Manifest,
    samples: &[Record],
    served: &Served,
    found: &Comparison,
) -> Vec<String> {
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
    why
}

/// Where the divergence starts, by whether the artifact itself agrees.
fn stage(model: &ModelUnderTest, stages: (usize, usize), derived: bool) -> Option<String> {
    match stages {
        (0, 0) if model.artifact.is_none() => {
            Some("stage unknown: the artifact was not run".to_owned())
        }
        (0, 0) => None,
        (0, _) if derived => Some(
            "divergence starts at artifact → endpoint: the endpoint answers these rows \
            otherwise than the artifact run in-process"
                .to_owned(),
        ),
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
