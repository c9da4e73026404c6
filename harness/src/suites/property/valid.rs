//! Valid batches: answered 200 and in range, the same twice, each row as
//! alone; a classifier's probabilities and label; one large batch.

use preflight_bundle::{Manifest, Value};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::{CASES, Endpoint, LARGE_BATCH, LARGE_CASES, SAME, by_the_clock, fallback_note, within};
use crate::client::Answer;
use crate::report::Check;

/// A valid batch is answered 200, in range; the same twice; and each row as
/// it would be alone: three properties, each reported with its own case.
pub(super) fn valid_batches(
    endpoint: &Endpoint<'_>,
    row: &BoxedStrategy<Vec<Value>>,
) -> Vec<Check> {
    let batches = prop::collection::vec(row.clone(), 1..6);
    let in_range = endpoint.property(
        "valid rows are answered in range",
        CASES,
        batches.clone(),
        |rows| in_range(endpoint.manifest, &answered(endpoint, rows)?),
    );
    vec![
        in_range,
        same_twice(endpoint, batches.clone()),
        as_alone(endpoint, batches),
    ]
}

/// The answer to a valid batch, which must be 200.
fn answered(endpoint: &Endpoint<'_>, rows: &[Vec<Value>]) -> Result<Answer, TestCaseError> {
    let answer = endpoint.call(rows)?;
    if !answer.ok() {
        return Err(TestCaseError::fail(format!(
            "a valid batch was answered {}",
            answer.describe()
        )));
    }
    Ok(answer)
}

/// The same request is answered the same twice.
fn same_twice(endpoint: &Endpoint<'_>, batches: Batches) -> Check {
    endpoint.property(
        "the same request is answered the same twice",
        CASES,
        batches,
        |rows| {
            let first = answered(endpoint, rows)?;
            let second = endpoint.call(rows)?;
            if !second.ok()
                || (!by_the_clock(&first, &second)
                    && !within(&first.outputs, &second.outputs, SAME))
            {
                return Err(TestCaseError::fail(format!(
                    "the same request twice gave different answers: {:?} then {:?} ({})",
                    first.outputs,
                    second.outputs,
                    second.describe()
                )));
            }
            Ok(())
        },
    )
}

/// A row in a batch is answered as it is alone.
fn as_alone(endpoint: &Endpoint<'_>, batches: Batches) -> Check {
    // A row's answer may move with its batch's size, as ONNX Runtime regroups
    // float arithmetic (a linear model's product runs another kernel for a
    // batch), but never by more than the contract calls the same answer.
    let batched = endpoint.manifest.contract.parity.unwrap_or(SAME);
    endpoint.property(
        "a row in a batch is answered as alone",
        CASES,
        batches,
        |rows| {
            let first = answered(endpoint, rows)?;
            let last = rows.len() - 1;
            let alone = endpoint.call(&rows[last..])?;
            let in_batch: Vec<Vec<f64>> = first.outputs.iter().map(|c| vec![c[last]]).collect();
            if !alone.ok()
                || (!by_the_clock(&first, &alone) && !within(&alone.outputs, &in_batch, batched))
            {
                return Err(TestCaseError::fail(format!(
                    "a row in a batch of {} answered {in_batch:?}{} but alone {:?}{} ({})",
                    rows.len(),
                    fallback_note(&first),
                    alone.outputs,
                    fallback_note(&alone),
                    alone.describe()
                )));
            }
            Ok(())
        },
    )
}

/// Batches of one to five valid rows.
type Batches = prop::collection::VecStrategy<BoxedStrategy<Vec<Value>>>;

/// Every output is finite and within its declared bounds.
fn in_range(manifest: &Manifest, answer: &Answer) -> Result<(), TestCaseError> {
    match crate::suites::out_of_range(manifest, &answer.outputs) {
        Some(why) => Err(TestCaseError::fail(why)),
        None => Ok(()),
    }
}

/// A classifier's answers are probabilities, and its label their arg-max:
/// each row's probabilities sum to 1, and the label names the class of the
/// largest (unless the top two lie within the parity tolerance, where
/// rounding may name either). `None` for a regressor.
pub(super) fn classified(
    endpoint: &Endpoint<'_>,
    row: &BoxedStrategy<Vec<Value>>,
) -> Option<Check> {
    let manifest = endpoint.manifest;
    manifest.classifier()?;
    let tolerance = manifest.contract.parity.unwrap_or(SAME);
    let batches = prop::collection::vec(row.clone(), 1..6);
    Some(endpoint.property(
        "probabilities sum to 1 and the label is their arg-max",
        CASES,
        batches,
        move |rows| {
            let answer = endpoint.call(rows)?;
            if !answer.ok() {
                return Err(TestCaseError::fail(format!(
                    "a valid batch was answered {}",
                    answer.describe()
                )));
            }
            for i in 0..rows.len() {
                let values = crate::slots::row(&answer.outputs, i);
                let Some(c) = crate::slots::classified(manifest, &values) else {
                    continue;
                };
                let sum: f64 = c.probabilities.iter().sum();
                if (sum - 1.0).abs() > crate::suites::PROBABILITY_SLACK {
                    return Err(TestCaseError::fail(format!(
                        "row {i}: the probabilities {:?} sum to {sum}, not 1",
                        c.probabilities
                    )));
                }
                let top = c
                    .probabilities
                    .iter()
                    .copied()
                    .fold(f64::NEG_INFINITY, f64::max);
                let near_tie = c.margin() <= tolerance.allowance(top);
                if c.arg_max().map(|k| k as f64) != Some(c.label) && !near_tie {
                    let classes = manifest.classifier().map(|c| c.classes).unwrap_or_default();
                    let named = |k: Option<usize>| {
                        k.and_then(|k| classes.get(k))
                            .map_or("no class".to_owned(), ToString::to_string)
                    };
                    return Err(TestCaseError::fail(format!(
                        "row {i}: the label is {}, but the largest probability is of {}: {:?}",
                        named(c.label.is_finite().then_some(c.label as usize)),
                        named(c.arg_max()),
                        c.probabilities
                    )));
                }
            }
            Ok(())
        },
    ))
}

pub(super) fn large_batch(endpoint: &Endpoint<'_>, row: &BoxedStrategy<Vec<Value>>) -> Check {
    let large = prop::collection::vec(row.clone(), LARGE_BATCH..=LARGE_BATCH);
    let name = format!("a batch of {LARGE_BATCH} rows is answered");
    endpoint.property(&name, LARGE_CASES, large, |rows| {
        let answer = endpoint.call(rows)?;
        if answer.ok() {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "a batch of {} valid rows was answered {}",
                rows.len(),
                answer.describe()
            )))
        }
    })
}
