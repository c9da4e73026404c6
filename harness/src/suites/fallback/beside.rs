//! The served fallback beside the served main model, on rows no sample or
//! hold-out row may reach: every declared category and the null of each
//! nullable input, one change at a time on several samples. There the
//! fallback's own terms (a category's weight, a null's) may never have been
//! exercised, and `fallback.json` agreeing with itself proves nothing; the
//! main model is the one reference every row has.
//!
//! The rule (docs/harness.md, "The fallback beside the main model"): set to
//! one value, on `BASES` samples, the two may differ on average by at most
//! `REACH` times the fallback's own error on the hold-out: its mean absolute
//! error for a regressor; for a classifier its log loss, the difference being
//! taken between log-probabilities (each at least `FLOOR`), where a wrong
//! weight shows as it is. A fallback is a simpler model and differs from the
//! main one everywhere, by about its error, and by a few times that where
//! the two kinds of model part most (a linear fallback misses how walking
//! time grows with distance); a weight that was never fitted is off by an
//! order of magnitude more. Numeric bounds are left out: past the training
//! rows a linear fallback goes on rising where trees go flat, a difference
//! of the two kinds of model, not a fault, and every row exercises each
//! numeric weight.

use preflight_bundle::{Fallback, Manifest, Metric, Record, Value};

use super::super::ModelUnderTest;
use super::super::quality::score;
use super::agreement::{Side, answers, fallback_slots, generated, named};
use super::forced;
use crate::client::Unreachable;
use crate::report::{Check, Skip};

const NAME: &str = "near the main model where no row reaches";
/// How many times the fallback's hold-out error a value's mean difference
/// may reach.
const REACH: f64 = 10.0;
/// Samples each value is set on.
const BASES: usize = 8;
/// The smallest probability compared, so that a log-probability is finite.
const FLOOR: f64 = 1e-6;

/// The two answers' differences on one row, slot by slot: of values or,
/// for a classifier, of log-probabilities.
fn differences(classifier: bool, fallback: &[f64], main: &[f64]) -> Vec<f64> {
    let scale = |x: f64| if classifier { x.max(FLOOR).ln() } else { x };
    fallback
        .iter()
        .zip(main)
        .map(|(&f, &m)| (scale(f) - scale(m)).abs())
        .collect()
}

/// The largest of a row's differences, and its slot.
fn largest(differences: &[f64]) -> (f64, usize) {
    differences.iter().enumerate().fold(
        (0.0, 0),
        |(d, k), (j, &x)| if x > d { (x, j) } else { (d, k) },
    )
}

/// The fallback's error on the hold-out, in the units its differences from
/// the main model are taken in.
fn error_metric(manifest: &Manifest) -> Metric {
    if manifest.classifier().is_some() {
        Metric::LogLoss
    } else {
        Metric::Mae
    }
}

pub(super) async fn near_main(
    model: &ModelUnderTest,
    fallback: &Fallback,
    holdout: &[Record],
    metrics: &mut std::collections::BTreeMap<String, f64>,
) -> Result<Check, Unreachable> {
    let manifest = model.bundle.manifest();
    let classifier = manifest.classifier().is_some();
    let bases: Vec<&Record> = model
        .samples
        .as_deref()
        .unwrap_or(holdout)
        .iter()
        .take(BASES)
        .collect();
    let changes = bases
        .first()
        .map(|b| generated(manifest, &b.inputs, false))
        .unwrap_or_default();
    if changes.is_empty() {
        return Ok(Check::skipped(
            NAME,
            Skip::NotApplicable,
            "no input has declared categories or nulls",
        ));
    }
    let metric = error_metric(manifest);
    let error = match score(model, holdout, metric, forced()).await? {
        Ok(error) if error > 0.0 => error,
        Ok(_) => return Ok(Check::skipped(NAME, Skip::NotRun, "the fallback is exact")),
        Err(why) => return Ok(Check::skipped(NAME, Skip::NotRun, why)),
    };
    // Row `b * changes.len() + k` is change `k` on base `b`.
    let rows: Vec<Vec<Value>> = bases
        .iter()
        .flat_map(|b| {
            changes.iter().map(|c| {
                let mut row = b.inputs.clone();
                row[c.input] = c.row[c.input].clone();
                row
            })
        })
        .collect();
    let borrowed: Vec<&[Value]> = rows.iter().map(Vec::as_slice).collect();
    let served = |side| answers(model, &borrowed, fallback, side);
    let (f, m) = match (served(Side::Fallback).await?, served(Side::Main).await?) {
        (Ok(f), Ok(m)) => (f, m),
        (Err(why), _) => return Ok(Check::new(NAME, false, format!("the fallback {why}"))),
        (_, Err(why)) => return Ok(Check::skipped(NAME, Skip::NotRun, why)),
    };
    let names = fallback_slots(manifest, fallback);
    // The main model is the reference only where its answers can be one: a
    // classifier's must be probabilities (the property suite judges them).
    if classifier
        && let Some((r, slot)) = m.iter().enumerate().find_map(|(r, row)| {
            let bad = row.iter().position(|p| !(0.0..=1.0).contains(p))?;
            Some((r, bad))
        })
    {
        return Ok(Check::skipped(
            NAME,
            Skip::NotRun,
            format!(
                "the main model's answers are no reference: '{}' is {} on sample '{}', not a \
                 probability",
                names[slot].name,
                m[r][slot],
                bases[r / changes.len()].id
            ),
        ));
    }
    let mut worst: f64 = 0.0;
    let mut beyond: Vec<(f64, String)> = Vec::new();
    for (k, change) in changes.iter().enumerate() {
        let on_bases: Vec<(usize, (f64, usize))> = (k..rows.len())
            .step_by(changes.len())
            .map(|r| (r, largest(&differences(classifier, &f[r], &m[r]))))
            .collect();
        let mean = on_bases.iter().map(|(_, (d, _))| d).sum::<f64>() / on_bases.len() as f64;
        let ratio = mean / error;
        worst = worst.max(ratio);
        let Some(&(r, (_, slot))) = on_bases.iter().max_by(|a, b| a.1.0.total_cmp(&b.1.0)) else {
            continue;
        };
        if ratio > REACH {
            beyond.push((
                ratio,
                format!(
                    "{}: {mean:.4} on average over {} samples, {ratio:.1}× (on sample '{}', \
                     '{}' fallback {:.4}, main model {:.4})",
                    change.label,
                    on_bases.len(),
                    bases[r / changes.len()].id,
                    names[slot].name,
                    f[r][slot],
                    m[r][slot]
                ),
            ));
        }
    }
    metrics.insert("main_difference_ratio".to_owned(), worst);
    let what = if classifier {
        format!("log-probabilities differ by at most {worst:.1}× its hold-out log loss {error:.4}")
    } else {
        format!("answers differ by at most {worst:.1}× its hold-out MAE {error:.4}")
    };
    Ok(if beyond.is_empty() {
        Check::new(
            NAME,
            true,
            format!(
                "{} categories and nulls, each on {} samples: the fallback's and the main \
                 model's {what}, on average over the samples; limit {REACH}×",
                changes.len(),
                bases.len()
            ),
        )
    } else {
        beyond.sort_by(|a, b| b.0.total_cmp(&a.0));
        let named_rows: Vec<String> = beyond.into_iter().map(|(_, why)| why).collect();
        let unit = if classifier {
            format!("log loss {error:.4}")
        } else {
            format!("MAE {error:.4}")
        };
        Check::new(
            NAME,
            false,
            format!(
                "the fallback strays from the main model where no row reaches, by more than \
                 {REACH}× its hold-out {unit}: {}",
                named(&named_rows)
            ),
        )
    })
}
