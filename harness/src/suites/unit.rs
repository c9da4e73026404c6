//! `unit`: the bundle alone, before any endpoint. The fallback covers the
//! inputs, and the ONNX artifact, run in-process, reproduces the training
//! process's outputs (artifact parity). That the files conform to the format
//! is checked before any suite runs: a bundle that does not stops the run.

use preflight_bundle::Tolerance;

use super::descriptor::{Descriptor, Need};
use super::{ModelUnderTest, Suite};
use crate::client::expected;
use crate::report::{Check, Skip, SuiteReport};
use crate::slots::{SlotKind, agrees, near_tie, slots};

/// What the rest of the harness knows of the suite (`Suite::descriptor`).
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    needs: &[Need::Artifact],
    purpose: &[ARTIFACT_PARITY],
    ..Descriptor::FUNCTIONAL
};

pub(super) fn run(model: &ModelUnderTest) -> SuiteReport {
    // The manifest, the samples and the hold-out conform, or the bundle
    // would not have been opened: nothing is left to judge of them here.
    let manifest = model.bundle.manifest();
    let mut checks = Vec::new();
    checks.push(match model.bundle.fallback() {
        Some(fallback) => {
            let covered = fallback.inputs();
            let missing: Vec<&str> = manifest
                .inputs
                .iter()
                .map(|f| f.name.as_str())
                .filter(|n| !covered.contains(n))
                .collect();
            Check::new(
                "fallback covers the inputs",
                missing.is_empty(),
                if missing.is_empty() {
                    "every input has a term".to_owned()
                } else {
                    format!("no term for {}", missing.join(", "))
                },
            )
        }
        None => match model.bundle.fallback_error() {
            Some(error) => Check::new("fallback covers the inputs", false, error),
            None => Check::skipped(
                "fallback covers the inputs",
                Skip::Missing,
                "the bundle has no fallback",
            ),
        },
    });
    checks.push(artifact_parity(model));
    SuiteReport::new(Suite::Unit.name(), checks)
}

/// The check that carries the suite's purpose: the artifact against the
/// training process's outputs.
pub(super) const ARTIFACT_PARITY: &str = "artifact parity";

fn artifact_parity(model: &ModelUnderTest) -> Check {
    const NAME: &str = ARTIFACT_PARITY;
    let (Some(samples), Some(tolerance)) =
        (&model.samples, model.bundle.manifest().contract.parity)
    else {
        let contract = &model.bundle.manifest().contract;
        let why = super::needs(&[
            ("samples.jsonl", model.samples.is_some()),
            ("contract.parity", contract.parity.is_some()),
        ]);
        return Check::skipped(NAME, Skip::Missing, why);
    };
    match &model.artifact {
        None => Check::skipped(NAME, Skip::NotRun, "the artifact was not run"),
        Some(Err(reason)) => Check::new(
            NAME,
            false,
            format!("training → artifact: the artifact cannot run the samples: {reason}"),
        ),
        Some(Ok(outputs)) => {
            let (off, worst) = compare(model.bundle.manifest(), samples, outputs, tolerance);
            match worst {
                None => Check::new(
                    NAME,
                    true,
                    format!(
                        "{} rows within |Δ| <= {} + {}·|expected|",
                        samples.len(),
                        tolerance.abs,
                        tolerance.rel
                    ),
                ),
                Some((id, got, want)) => Check::new(
                    NAME,
                    false,
                    format!(
                        "training → artifact: {off} of {} rows off; worst row '{id}': artifact \
                            {got}, training {want}",
                        samples.len()
                    ),
                ),
            }
        }
    }
}

/// The rows with a value outside the tolerance, and the worst value (id,
/// got, expected).
/// A label is exact, except at a near tie of training's probabilities.
pub(super) fn compare(
    manifest: &preflight_bundle::Manifest,
    samples: &[preflight_bundle::Record],
    outputs: &[Vec<f64>],
    tolerance: Tolerance,
) -> (usize, Option<(String, f64, f64)>) {
    let slots = slots(manifest);
    let mut off = std::collections::BTreeSet::new();
    let mut worst: Option<(f64, String, f64, f64)> = None;
    for (o, column) in outputs.iter().enumerate() {
        let kind = slots[o].kind;
        for (i, (sample, &got)) in samples.iter().zip(column).enumerate() {
            let want = expected(manifest, sample, o);
            let excused = kind == SlotKind::Label && near_tie(manifest, sample, tolerance);
            if !agrees(kind, tolerance, got, want) && !excused {
                off.insert(i);
                let excess = if got.is_nan() {
                    f64::INFINITY
                } else {
                    (got - want).abs() - tolerance.allowance(want)
                };
                if worst.as_ref().is_none_or(|w| excess > w.0) {
                    worst = Some((excess, sample.id.clone(), got, want));
                }
            }
        }
    }
    (off.len(), worst.map(|(_, id, got, want)| (id, got, want)))
}
