//! What the properties generate: valid rows from the input schema and
//! `reference.json`.

use preflight_bundle::{Datatype, Feature, Manifest, Reference, Stats, Value};
use proptest::prelude::*;

/// One valid row: a value per input.
pub(super) fn row_strategy(
    manifest: &Manifest,
    reference: Option<&Reference>,
) -> BoxedStrategy<Vec<Value>> {
    let columns: Vec<BoxedStrategy<Value>> = manifest
        .inputs
        .iter()
        .map(|f| value_strategy(f, reference, f.nullable))
        .collect();
    columns.prop_map(|v| v).boxed()
}

/// Values of one input: edges and a spread inside its bounds (or the
/// reference's observed range), a category, and null one time in eight.
pub(super) fn value_strategy(
    feature: &Feature,
    reference: Option<&Reference>,
    nullable: bool,
) -> BoxedStrategy<Value> {
    let observed = reference.and_then(|r| match r.inputs.get(&feature.name) {
        Some(Stats::Numeric(n)) => Some((n.min, n.max)),
        _ => None,
    });
    let (lo, hi) = match (feature.min, feature.max, observed) {
        (Some(lo), Some(hi), _) => (lo, hi),
        (lo, hi, Some((a, b))) => (lo.unwrap_or(a), hi.unwrap_or(b)),
        (lo, hi, None) => (lo.unwrap_or(-1e3), hi.unwrap_or(1e3)),
    };
    let base: BoxedStrategy<Value> = match feature.datatype {
        Datatype::Bytes => {
            let categories = feature
                .categories
                .clone()
                .unwrap_or_else(|| vec!["a".to_owned(), "b".to_owned()]);
            prop::sample::select(categories)
                .prop_map(Value::Text)
                .boxed()
        }
        Datatype::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        dt if dt.is_integer() => {
            let (lo, hi) = (lo.ceil() as i64, hi.floor() as i64);
            prop_oneof![
                1 => Just(Value::Int(lo)),
                1 => Just(Value::Int(hi)),
                6 => (lo..=hi).prop_map(Value::Int),
            ]
            .boxed()
        }
        // Two decimals, as clients send them; edges included.
        _ => prop_oneof![
            1 => Just(Value::Float(lo)),
            1 => Just(Value::Float(hi)),
            6 => (lo..=hi).prop_map(|x| Value::Float((x * 100.0).round() / 100.0)),
        ]
        .boxed(),
    };
    if nullable {
        prop_oneof![1 => Just(Value::Null), 7 => base].boxed()
    } else {
        base
    }
}
