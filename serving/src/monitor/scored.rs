//! What the monitor reads of an answer: each output as numbers, a
//! classifier's label as the position of its class, and each row's scored
//! values for the live error: a regressor's first output, or a classifier's
//! label and probabilities.

use preflight_bundle::{Class, Manifest};
use serde_json::Value as Json;

use crate::model::TensorData;

/// How a version's answers are scored.
#[derive(Debug)]
pub(crate) enum Scoring {
    /// A regression model: its first output.
    Value,
    /// A classifier: its classes, their names as `reference.json` keys
    /// them, and where its label and probabilities are.
    Classes {
        classes: Vec<Class>,
        names: Vec<String>,
        label: usize,
        probabilities: usize,
    },
}

impl Scoring {
    pub(crate) fn of(manifest: &Manifest) -> Self {
        match manifest.classifier() {
            None => Scoring::Value,
            Some(c) => Scoring::Classes {
                classes: c.classes.to_vec(),
                names: c
                    .classes
                    .iter()
                    .map(|class| match class {
                        Class::Int(i) => i.to_string(),
                        Class::Text(s) => s.clone(),
                    })
                    .collect(),
                label: c.label,
                probabilities: c.probabilities,
            },
        }
    }

    /// Each output as numbers, a label as its class's position (NaN for a
    /// value that is no class); an output the answer lacks is empty.
    pub(crate) fn columns(&self, outputs: &[Option<TensorData>]) -> Vec<Vec<f64>> {
        outputs
            .iter()
            .enumerate()
            .map(|(index, output)| match (self, output) {
                (_, None) => Vec::new(),
                (Scoring::Classes { label, .. }, Some(column)) if *label == index => {
                    self.positions(column)
                }
                (_, Some(column)) => numbers(column),
            })
            .collect()
    }

    fn positions(&self, column: &TensorData) -> Vec<f64> {
        let Scoring::Classes { classes, .. } = self else {
            return Vec::new();
        };
        let position = |found: Option<usize>| found.map_or(f64::NAN, |k| k as f64);
        match column {
            TensorData::Text(v) => v
                .iter()
                .map(|s| position(classes.iter().position(|c| *c == Class::Text(s.clone()))))
                .collect(),
            TensorData::I64(v) => v
                .iter()
                .map(|i| position(classes.iter().position(|c| *c == Class::Int(*i))))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Values per scored row: 1, or a classifier's label and K probabilities.
    pub(crate) fn width(&self) -> usize {
        match self {
            Scoring::Value => 1,
            Scoring::Classes { classes, .. } => 1 + classes.len(),
        }
    }

    /// The scored values of every row, flat, `width` a row; empty where the
    /// answer lacks what is scored.
    pub(crate) fn rows(&self, columns: &[Vec<f64>]) -> Vec<f64> {
        match self {
            Scoring::Value => columns.first().cloned().unwrap_or_default(),
            Scoring::Classes {
                classes,
                label,
                probabilities,
                ..
            } => {
                let (labels, p) = (&columns[*label], &columns[*probabilities]);
                let k = classes.len();
                if p.len() != labels.len() * k {
                    return Vec::new();
                }
                labels
                    .iter()
                    .enumerate()
                    .flat_map(|(row, &l)| {
                        std::iter::once(l).chain(p[row * k..][..k].iter().copied())
                    })
                    .collect()
            }
        }
    }

    /// A feedback target as a number: a regression value, or the position
    /// of a classifier's class, given as the label output carries it.
    pub(crate) fn target(&self, value: &Json) -> Result<f64, String> {
        match self {
            Scoring::Value => value
                .as_f64()
                .ok_or_else(|| format!("the target {value} is not a number")),
            Scoring::Classes { classes, names, .. } => {
                let class = match value {
                    Json::String(s) => Some(Class::Text(s.clone())),
                    Json::Number(n) => n.as_i64().map(Class::Int),
                    _ => None,
                };
                class
                    .and_then(|c| classes.iter().position(|known| *known == c))
                    .map(|k| k as f64)
                    .ok_or_else(|| {
                        format!(
                            "the target {value} is not a class of the model (classes: {})",
                            names.join(", ")
                        )
                    })
            }
        }
    }

    /// The label output's class names by position, for its window.
    pub(crate) fn class_name(&self, output: usize, position: f64) -> Option<&str> {
        match self {
            Scoring::Classes { names, label, .. } if *label == output && position >= 0.0 => {
                names.get(position as usize).map(String::as_str)
            }
            _ => None,
        }
    }

    /// Whether an output is a classifier's probabilities, K values a row,
    /// which no window reads.
    pub(crate) fn is_probabilities(&self, output: usize) -> bool {
        matches!(self, Scoring::Classes { probabilities, .. } if *probabilities == output)
    }
}

/// A column as numbers; text is no number.
fn numbers(column: &TensorData) -> Vec<f64> {
    match column {
        TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::F64(v) => v.clone(),
        TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
        TensorData::Text(_) => Vec::new(),
    }
}
