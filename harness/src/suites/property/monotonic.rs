//! `contract.monotonic`: two rows that differ only in the input, in order.

use preflight_bundle::{Direction, Monotonic, Reference, Tolerance, Value};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::strategy::value_strategy;
use super::{CASES, Endpoint};
use crate::report::Check;
use crate::slots::SlotKind;

/// `contract.monotonic`: two rows that differ only in the input, in order;
/// `None` when the input is not one of the model's.
pub(super) fn monotonic_check(
    endpoint: &Endpoint<'_>,
    row: &BoxedStrategy<Vec<Value>>,
    monotonic: &Monotonic,
    reference: Option<&Reference>,
) -> Option<Check> {
    let (index, feature) = endpoint.manifest.input(&monotonic.input)?;
    let slot = constrained_slot(endpoint.manifest, monotonic)?;
    let tolerance = endpoint.manifest.contract.parity.unwrap_or(Tolerance {
        abs: 1e-4,
        rel: 0.0,
    });
    let pair = (
        row.clone(),
        value_strategy(feature, reference, false),
        value_strategy(feature, reference, false),
    );
    let direction = monotonic.direction;
    let name = check_name(monotonic);
    let rows = pair.prop_map(move |(row, a, b)| {
        let (lo, hi) = if a.as_f64() <= b.as_f64() {
            (a, b)
        } else {
            (b, a)
        };
        let (mut low, mut high) = (row.clone(), row);
        low[index] = lo;
        high[index] = hi;
        vec![low, high]
    });
    Some(endpoint.property(&name, CASES, rows, |rows| {
        let answer = endpoint.call(rows)?;
        if !answer.ok() {
            return Err(TestCaseError::fail(format!(
                "answered {}",
                answer.describe()
            )));
        }
        let (low, high) = (answer.outputs[slot][0], answer.outputs[slot][1]);
        let holds = match direction {
            Direction::Increasing => high >= low - tolerance.allowance(low),
            Direction::Decreasing => high <= low + tolerance.allowance(low),
        };
        if holds {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "{low} at the lower value, {high} at the higher"
            )))
        }
    }))
}

/// The output slot the constraint is on: the first output, or for a
/// classifier the probability of the class it names (`None` for a class the
/// model does not have).
fn constrained_slot(manifest: &preflight_bundle::Manifest, monotonic: &Monotonic) -> Option<usize> {
    match (&monotonic.class, manifest.classifier()) {
        (Some(class), Some(c)) => {
            let k = c.classes.iter().position(|known| known == class)?;
            crate::slots::slots(manifest)
                .iter()
                .position(|s| s.kind == SlotKind::Probability(k))
        }
        _ => Some(0),
    }
}

/// "'distance_km' is monotonic increasing", and the class where it names one.
fn check_name(monotonic: &Monotonic) -> String {
    format!(
        "'{}' is monotonic {}{}",
        monotonic.input,
        match monotonic.direction {
            Direction::Increasing => "increasing",
            Direction::Decreasing => "decreasing",
        },
        monotonic
            .class
            .as_ref()
            .map_or(String::new(), |c| format!(" in the probability of {c}"))
    )
}
