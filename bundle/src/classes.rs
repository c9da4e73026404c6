//! A classifier's classes and its two outputs: the label and the class
//! probabilities (`docs/bundle-format.md`, "Classifiers").

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::manifest::{Feature, Manifest, Task};
use crate::{Datatype, Value};

/// One class of a classifier, as `[model] classes` lists it and its label
/// output carries it: an integer (label `INT64`) or a string (label `BYTES`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Class {
    Int(i64),
    Text(String),
}

impl Class {
    /// The class as the label output carries it.
    pub fn to_value(&self) -> Value {
        match self {
            Class::Int(i) => Value::Int(*i),
            Class::Text(s) => Value::Text(s.clone()),
        }
    }

    /// The label output's datatype for classes like this one.
    pub fn datatype(&self) -> Datatype {
        match self {
            Class::Int(_) => Datatype::Int64,
            Class::Text(_) => Datatype::Bytes,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Class::Int(i) => write!(f, "{i}"),
            Class::Text(s) => write!(f, "'{s}'"),
        }
    }
}

/// Where a classifier's outputs are in the manifest, and its classes in
/// order: the order of the probability columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Classifier<'a> {
    pub classes: &'a [Class],
    /// The index of the label output.
    pub label: usize,
    /// The index of the probabilities output, `[-1, K]` with K classes.
    pub probabilities: usize,
}

impl Classifier<'_> {
    /// The position in `classes` of a label value; `None` for a value that
    /// is no class.
    pub fn index(&self, label: &Value) -> Option<usize> {
        self.classes.iter().position(|c| match (c, label) {
            (Class::Int(i), Value::Int(v)) => i == v,
            (Class::Text(s), Value::Text(v)) => s == v,
            _ => false,
        })
    }

    /// Number of classes.
    pub fn k(&self) -> usize {
        self.classes.len()
    }
}

impl Manifest {
    /// The classifier's outputs and classes; `None` for a regression model.
    /// The manifest's validation guarantees both outputs of a classifier.
    pub fn classifier(&self) -> Option<Classifier<'_>> {
        if self.model.task != Task::Classification {
            return None;
        }
        let classes = self.model.classes.as_deref()?;
        let probabilities = self.outputs.iter().position(|o| o.width() > 1)?;
        let label = self.outputs.iter().position(|o| o.width() == 1)?;
        Some(Classifier {
            classes,
            label,
            probabilities,
        })
    }
}

impl Feature {
    /// Values per row: K for a probabilities output of shape `[-1, K]`, else 1.
    pub fn width(&self) -> usize {
        match self.shape.as_deref() {
            Some([-1, k]) => usize::try_from(*k).unwrap_or(1),
            _ => 1,
        }
    }
}

/// Where a broken rule is: the output's index (`None` for `[model]`), the
/// key and the message.
type Broken = (Option<usize>, String, String);

/// The rules of a classifier's manifest: at least two distinct classes of
/// one kind, and exactly two outputs: a label of the classes' datatype, and
/// FP32 probabilities of shape `[-1, K]`.
pub(crate) fn check(classes: &[Class], outputs: &[toml::Spanned<Feature>]) -> Result<(), Broken> {
    let model = |message: String| Err((None, "model.classes".to_owned(), message));
    if classes.len() < 2 {
        return model(format!(
            "a classifier has at least two classes, not {}",
            classes.len()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = classes.iter().find(|c| !seen.insert(*c)) {
        return model(format!("{dup} is listed twice"));
    }
    let datatype = classes[0].datatype();
    if classes.iter().any(|c| c.datatype() != datatype) {
        return model("classes are all integers or all strings, not both".to_owned());
    }
    let k = classes.len();
    if outputs.len() != 2 {
        let names: Vec<&str> = outputs.iter().map(|o| o.get_ref().name.as_str()).collect();
        return Err((
            None,
            "outputs".to_owned(),
            format!(
                "a classifier has two outputs, the label and the probabilities, not {} ({})",
                outputs.len(),
                names.join(", ")
            ),
        ));
    }
    let shaped: Vec<usize> = (0..2)
        .filter(|&i| outputs[i].get_ref().shape.is_some())
        .collect();
    let &[probabilities] = shaped.as_slice() else {
        return Err((
            Some(usize::from(shaped.is_empty())),
            "outputs".to_owned(),
            format!(
                "exactly one output is the probabilities, with shape = [-1, {k}]; {} of the two \
                    have a shape",
                shaped.len()
            ),
        ));
    };
    let p = outputs[probabilities].get_ref();
    let key = |k: &str, f: &Feature| format!("outputs.{}.{k}", f.name);
    if p.shape.as_deref() != Some(&[-1, k as i64]) {
        return Err((
            Some(probabilities),
            key("shape", p),
            format!(
                "{:?} is not [-1, {k}]: one probability per class, for any number of rows",
                p.shape.as_deref().unwrap_or_default()
            ),
        ));
    }
    if p.datatype != Datatype::Fp32 {
        return Err((
            Some(probabilities),
            key("datatype", p),
            format!("the probabilities are FP32, not {}", p.datatype),
        ));
    }
    let label = 1 - probabilities;
    let l = outputs[label].get_ref();
    if l.datatype != datatype {
        return Err((
            Some(label),
            key("datatype", l),
            format!(
                "the label carries the classes, which are {}: {datatype}, not {}",
                if datatype == Datatype::Int64 {
                    "integers"
                } else {
                    "strings"
                },
                l.datatype
            ),
        ));
    }
    Ok(())
}

/// The index of the largest probability, the first of equals: the class a
/// classifier's label names (scikit-learn's `predict`). `None` when empty
/// or when a probability is NaN.
pub fn arg_max(probabilities: &[f64]) -> Option<usize> {
    if probabilities.iter().any(|p| p.is_nan()) {
        return None;
    }
    let mut best: Option<usize> = None;
    for (k, &p) in probabilities.iter().enumerate() {
        if best.is_none_or(|b| p > probabilities[b]) {
            best = Some(k);
        }
    }
    best
}
