//! The scalar columns the suites compare, one value per row each.
//!
//! A regression output is one column. A classifier's two outputs are 1 + K
//! columns: its label, as the position of the class in `[model] classes`
//! (so that labels compare as numbers, exactly), and the probability of
//! each class. Every suite reads answers, samples and the artifact's
//! outputs through this one mapping, so that a classifier is judged by the
//! same code as a regressor, with the rules that differ (a label is exact,
//! probabilities sum to 1) kept here and in the suites that need them.

use preflight_bundle::{Classifier, Manifest, Value, arg_max};
use serde_json::Value as Json;

/// One scalar column.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// The manifest output it comes from.
    pub output: usize,
    pub kind: SlotKind,
    /// As reports name it: `eta_minutes`, `label`, `probabilities[late]`.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// A regression output's value.
    Value,
    /// A classifier's label, as its class's position.
    Label,
    /// A classifier's probability of the class at this position.
    Probability(usize),
}

/// The columns of a model's outputs, in manifest order (a classifier's
/// probabilities in class order).
pub fn slots(manifest: &Manifest) -> Vec<Slot> {
    let classifier = manifest.classifier();
    let mut slots = Vec::new();
    for (output, feature) in manifest.outputs.iter().enumerate() {
        match classifier {
            Some(c) if c.probabilities == output => {
                for (k, class) in c.classes.iter().enumerate() {
                    slots.push(Slot {
                        output,
                        kind: SlotKind::Probability(k),
                        name: format!("{}[{}]", feature.name, class_name(class)),
                    });
                }
            }
            Some(c) if c.label == output => slots.push(Slot {
                output,
                kind: SlotKind::Label,
                name: feature.name.clone(),
            }),
            _ => slots.push(Slot {
                output,
                kind: SlotKind::Value,
                name: feature.name.clone(),
            }),
        }
    }
    slots
}

fn class_name(class: &preflight_bundle::Class) -> String {
    match class {
        preflight_bundle::Class::Int(i) => i.to_string(),
        preflight_bundle::Class::Text(s) => s.clone(),
    }
}

/// A row of outputs in manifest order (a record's `outputs`, `target` or
/// `fallback_outputs`) as slot values: NaN where a value is missing or is
/// no class.
pub fn values(manifest: &Manifest, outputs: &[Value]) -> Vec<f64> {
    let classifier = manifest.classifier();
    slots(manifest)
        .iter()
        .map(|slot| {
            let value = outputs.get(slot.output);
            match (slot.kind, value) {
                (SlotKind::Value, Some(v)) => v.as_f64().unwrap_or(f64::NAN),
                (SlotKind::Label, Some(v)) => label_index(classifier, v),
                (SlotKind::Probability(k), Some(Value::List(p))) => {
                    p.get(k).copied().unwrap_or(f64::NAN)
                }
                _ => f64::NAN,
            }
        })
        .collect()
}

/// A row of slot values as manifest outputs: the inverse of [`values`].
pub fn outputs(manifest: &Manifest, row: &[f64]) -> Vec<Value> {
    let classifier = manifest.classifier();
    let slots = slots(manifest);
    (0..manifest.outputs.len())
        .map(|output| {
            let mine: Vec<(SlotKind, f64)> = slots
                .iter()
                .zip(row)
                .filter(|(s, _)| s.output == output)
                .map(|(s, &v)| (s.kind, v))
                .collect();
            match mine.as_slice() {
                [(SlotKind::Value, v)] => Value::Float(*v),
                [(SlotKind::Label, k)] => classifier
                    .and_then(|c| c.classes.get(*k as usize))
                    .map_or(Value::Null, |class| class.to_value()),
                probabilities => Value::List(probabilities.iter().map(|(_, p)| *p).collect()),
            }
        })
        .collect()
}

fn label_index(classifier: Option<Classifier<'_>>, label: &Value) -> f64 {
    classifier
        .and_then(|c| c.index(label))
        .map_or(f64::NAN, |k| k as f64)
}

/// The answer's output tensors (`outputs[].data`, by the manifest's output
/// names) as slot columns of `rows` values each; why not, where an output
/// is missing or has the wrong number of values. A single-output model's
/// output is matched whatever the server calls it (Seldon MLServer calls it
/// `predict`).
pub fn columns(
    manifest: &Manifest,
    outputs: &[Json],
    rows: usize,
) -> Result<Vec<Vec<f64>>, String> {
    let classifier = manifest.classifier();
    let mut columns = Vec::new();
    for (index, feature) in manifest.outputs.iter().enumerate() {
        let found = outputs
            .iter()
            .find(|o| o["name"] == feature.name.as_str())
            .or(match (manifest.outputs.len(), outputs) {
                (1, [only]) => Some(only),
                _ => None,
            })
            .ok_or_else(|| format!("the answer has no output '{}'", feature.name))?;
        let mut flat = Vec::with_capacity(rows * feature.width());
        flatten(
            &found["data"],
            classifier.filter(|c| c.label == index),
            &mut flat,
        );
        let width = feature.width();
        if flat.len() != rows * width {
            return Err(format!(
                "output '{}' has {} values for {rows} rows{}",
                feature.name,
                flat.len(),
                if width > 1 {
                    format!(" of {width}")
                } else {
                    String::new()
                }
            ));
        }
        for k in 0..width {
            columns.push(flat.iter().skip(k).step_by(width).copied().collect());
        }
    }
    Ok(columns)
}

/// Numbers, flat; a label read as its class's position. A null, a string
/// where a number belongs, or a label that is no class reads as NaN: never
/// close to anything.
fn flatten(data: &Json, label: Option<Classifier<'_>>, out: &mut Vec<f64>) {
    match (data, label) {
        (Json::Array(items), _) => items.iter().for_each(|i| flatten(i, label, out)),
        (Json::String(s), Some(c)) => out.push(label_index(Some(c), &Value::Text(s.clone()))),
        (Json::Number(n), Some(c)) => out.push(match n.as_i64() {
            Some(i) => label_index(Some(c), &Value::Int(i)),
            None => f64::NAN,
        }),
        (Json::Number(n), None) => out.push(n.as_f64().unwrap_or(f64::NAN)),
        _ => out.push(f64::NAN),
    }
}

/// A classifier's row as slots: its label's position and its probabilities.
#[derive(Debug, Clone, Copy)]
pub struct Classified<'a> {
    pub label: f64,
    pub probabilities: &'a [f64],
}

/// The classifier's part of a row of slot values; `None` for a regressor.
pub fn classified<'a>(manifest: &Manifest, row: &'a [f64]) -> Option<Classified<'a>> {
    let c = manifest.classifier()?;
    let label = slots(manifest)
        .iter()
        .position(|s| s.kind == SlotKind::Label)?;
    let first = slots(manifest)
        .iter()
        .position(|s| s.kind == SlotKind::Probability(0))?;
    Some(Classified {
        label: row[label],
        probabilities: row.get(first..first + c.k())?,
    })
}

impl Classified<'_> {
    /// The label the probabilities name: their arg-max.
    pub fn arg_max(&self) -> Option<usize> {
        arg_max(self.probabilities)
    }

    /// The gap between the two largest probabilities: where it is within
    /// the parity tolerance, float rounding may legitimately name either.
    pub fn margin(&self) -> f64 {
        let mut sorted: Vec<f64> = self.probabilities.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        match sorted.as_slice() {
            [first, second, ..] => first - second,
            _ => f64::INFINITY,
        }
    }
}

/// Each row's slot values from slot columns.
pub fn row(columns: &[Vec<f64>], i: usize) -> Vec<f64> {
    columns
        .iter()
        .map(|c| c.get(i).copied().unwrap_or(f64::NAN))
        .collect()
}

/// Whether a served value is the expected one: a label exactly, any other
/// value within the tolerance.
pub fn agrees(kind: SlotKind, tolerance: preflight_bundle::Tolerance, got: f64, want: f64) -> bool {
    match kind {
        SlotKind::Label => got == want,
        _ => tolerance.accepts(got, want),
    }
}

/// Whether training's top two probabilities of a sample lie within the
/// tolerance of each other.
pub fn near_tie(
    manifest: &Manifest,
    sample: &preflight_bundle::Record,
    tolerance: preflight_bundle::Tolerance,
) -> bool {
    let Some(outputs) = &sample.outputs else {
        return false;
    };
    let values = values(manifest, outputs);
    classified(manifest, &values).is_some_and(|c| {
        let top = c
            .probabilities
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        c.margin() <= tolerance.allowance(top)
    })
}
