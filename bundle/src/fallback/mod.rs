//! `fallback.json`: the fast fallback model, evaluated natively.
//!
//! The fallback must not share the main model's failure modes, so it never
//! goes through ONNX Runtime: it is a handful of multiplications in Rust.

mod softmax;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use self::softmax::RawSoftmax;

use crate::error::{Error, ErrorKind};
use crate::manifest::Manifest;
use crate::{Value, fs_read_to_string};

/// The category key whose weight applies to a category the model never saw.
pub const OTHER_CATEGORY: &str = "__other__";

/// A fallback model bound to its manifest's inputs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Fallback {
    /// A regression output: a linear form, clipped.
    Linear(LinearFallback),
    /// A binary classifier's probabilities: the sigmoid of a linear form is
    /// the probability of the second class.
    Logistic(LinearFallback),
    /// A multiclass classifier's probabilities: the softmax of one linear
    /// form per class, in the manifest's class order.
    Softmax(Vec<LinearFallback>),
}

impl Fallback {
    /// Reads a `fallback.json` and binds it to the manifest's inputs and outputs.
    pub fn load(path: &Path, manifest: &Manifest) -> Result<Self, Error> {
        let text = fs_read_to_string(path)?;
        Self::parse(&text, path, manifest)
    }

    /// Parses `fallback.json` text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path, manifest: &Manifest) -> Result<Self, Error> {
        let syntax = |e: serde_json::Error| {
            Error::new(ErrorKind::Syntax, path, format!("{e}")).at_line(Some(e.line()))
        };
        // The kind decides the shape of the rest, so it is read on its own first.
        let kind: RawKind = serde_json::from_str(text).map_err(syntax)?;
        let kind = kind.kind.as_str();
        let classifier = matches!(kind, "logistic" | "softmax");
        if !matches!(kind, "linear" | "logistic" | "softmax") {
            return Err(Error::invalid(
                path,
                format!(
                    "fallback kind '{kind}' is not supported (this version supports 'linear', \
                        'logistic' and 'softmax')"
                ),
            )
            .at_key("kind"));
        }
        let wanted = match manifest.classifier() {
            None if classifier => Some("a regression model's fallback is 'linear'".to_owned()),
            Some(c) if kind == "linear" => Some(format!(
                "a classifier's fallback is 'logistic' (two classes) or 'softmax', not 'linear'; \
                    this one has {} classes",
                c.k()
            )),
            Some(c) if kind == "logistic" && c.k() != 2 => Some(format!(
                "'logistic' is for two classes; this classifier has {}: use 'softmax'",
                c.k()
            )),
            _ => None,
        };
        if let Some(message) = wanted {
            return Err(Error::invalid(path, message).at_key("kind"));
        }
        if kind == "softmax" {
            let raw: RawSoftmax = serde_json::from_str(text).map_err(syntax)?;
            return raw.bind(path, manifest).map(Fallback::Softmax);
        }
        let raw: RawFallback = serde_json::from_str(text).map_err(syntax)?;
        let form = LinearFallback::bind(raw, path, manifest)?;
        if classifier {
            check_probabilities(&form.output, path, manifest)?;
        }
        Ok(match kind {
            "logistic" => Fallback::Logistic(form),
            _ => Fallback::Linear(form),
        })
    }

    /// The name of the output the fallback predicts: the regression output,
    /// or a classifier's probabilities (its label is their arg-max).
    pub fn output(&self) -> &str {
        match self {
            Fallback::Linear(l) | Fallback::Logistic(l) => &l.output,
            Fallback::Softmax(forms) => forms.first().map_or("", |f| f.output.as_str()),
        }
    }

    /// The manifest inputs the fallback reads, by name.
    pub fn inputs(&self) -> Vec<&str> {
        let form = match self {
            Fallback::Linear(l) | Fallback::Logistic(l) => l,
            Fallback::Softmax(forms) => match forms.first() {
                Some(first) => first,
                None => return Vec::new(),
            },
        };
        form.numeric
            .iter()
            .map(|t| t.name.as_str())
            .chain(form.categorical.iter().map(|t| t.name.as_str()))
            .collect()
    }

    /// Predicts one row given in manifest input order: the regression
    /// output's value, or a classifier's probabilities in class order.
    pub fn predict(&self, row: &[Value]) -> Vec<f64> {
        match self {
            Fallback::Linear(l) => vec![l.predict(row)],
            Fallback::Logistic(l) => {
                let p = 1.0 / (1.0 + (-l.predict(row)).exp());
                vec![1.0 - p, p]
            }
            Fallback::Softmax(forms) => {
                let scores: Vec<f64> = forms.iter().map(|f| f.predict(row)).collect();
                let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exp: Vec<f64> = scores.iter().map(|z| (z - top).exp()).collect();
                let sum: f64 = exp.iter().sum();
                exp.into_iter().map(|e| e / sum).collect()
            }
        }
    }
}

/// A classifier's fallback predicts its probabilities output.
fn check_probabilities(output: &str, path: &Path, manifest: &Manifest) -> Result<(), Error> {
    match manifest.classifier() {
        Some(c) if manifest.outputs[c.probabilities].name == output => Ok(()),
        Some(c) => Err(Error::invalid(
            path,
            format!(
                "a classifier's fallback predicts its probabilities, '{}', not '{output}'",
                manifest.outputs[c.probabilities].name
            ),
        )
        .at_key("output")),
        None => Ok(()),
    }
}

/// `intercept + Σ coef·(x − mean)/scale + Σ weight[category]`, then clipped.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LinearFallback {
    pub output: String,
    pub intercept: f64,
    pub numeric: Vec<NumericTerm>,
    pub categorical: Vec<CategoricalTerm>,
    pub clip: Option<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NumericTerm {
    pub name: String,
    /// The input's position in the manifest.
    pub index: usize,
    /// The value used for null (and NaN).
    pub impute: f64,
    pub mean: f64,
    pub scale: f64,
    pub coef: f64,
}

#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CategoricalTerm {
    pub name: String,
    pub index: usize,
    pub weights: HashMap<String, f64>,
    /// The weight of a category absent from `weights`, and of null.
    pub other: f64,
}

impl LinearFallback {
    pub fn predict(&self, row: &[Value]) -> f64 {
        let mut y = self.intercept;
        for t in &self.numeric {
            let x = match row.get(t.index).and_then(Value::as_f64) {
                Some(x) if !x.is_nan() => x,
                // Null, NaN and a value of the wrong type all read as missing.
                _ => t.impute,
            };
            y += t.coef * (x - t.mean) / t.scale;
        }
        for t in &self.categorical {
            let weight = match row.get(t.index) {
                Some(Value::Text(s)) => t.weights.get(s.as_str()).copied(),
                Some(Value::Int(i)) => t.weights.get(&i.to_string()).copied(),
                _ => None,
            };
            y += weight.unwrap_or(t.other);
        }
        match self.clip {
            Some((lo, hi)) => y.clamp(lo, hi),
            None => y,
        }
    }

    fn bind(raw: RawFallback, path: &Path, manifest: &Manifest) -> Result<Self, Error> {
        let invalid = |key: String, message: String| Error::invalid(path, message).at_key(key);
        if manifest.output(&raw.output).is_none() {
            return Err(invalid(
                "output".into(),
                format!(
                    "'{}' is not an output of model '{}'",
                    raw.output, manifest.model.name
                ),
            ));
        }
        let finite = |key: String, x: f64| {
            if x.is_finite() {
                Ok(x)
            } else {
                Err(invalid(key, format!("{x} is not finite")))
            }
        };
        let intercept = finite("intercept".into(), raw.intercept)?;
        let mut numeric = Vec::new();
        for (name, t) in raw.numeric {
            let key = |k: &str| format!("numeric.{name}.{k}");
            let (index, feature) = manifest.input(&name).ok_or_else(|| {
                invalid(
                    format!("numeric.{name}"),
                    format!(
                        "'{name}' is not an input of model '{}'",
                        manifest.model.name
                    ),
                )
            })?;
            if !feature.datatype.is_numeric() && feature.datatype != crate::Datatype::Bool {
                return Err(invalid(
                    format!("numeric.{name}"),
                    format!(
                        "'{name}' is {}, so it cannot be a numeric term",
                        feature.datatype
                    ),
                ));
            }
            let scale = finite(key("scale"), t.scale)?;
            if scale == 0.0 {
                return Err(invalid(key("scale"), "must not be zero".into()));
            }
            numeric.push(NumericTerm {
                index,
                impute: finite(key("impute"), t.impute)?,
                mean: finite(key("mean"), t.mean)?,
                scale,
                coef: finite(key("coef"), t.coef)?,
                name,
            });
        }
        let mut categorical = Vec::new();
        for (name, mut weights) in raw.categorical {
            let (index, feature) = manifest.input(&name).ok_or_else(|| {
                invalid(
                    format!("categorical.{name}"),
                    format!(
                        "'{name}' is not an input of model '{}'",
                        manifest.model.name
                    ),
                )
            })?;
            if feature.datatype.is_float() {
                return Err(invalid(
                    format!("categorical.{name}"),
                    format!(
                        "'{name}' is {}, so it cannot be a categorical term",
                        feature.datatype
                    ),
                ));
            }
            if let Some((category, w)) = weights.iter().find(|(_, w)| !w.is_finite()) {
                return Err(invalid(
                    format!("categorical.{name}.{category}"),
                    format!("{w} is not finite"),
                ));
            }
            let other = weights.remove(OTHER_CATEGORY).unwrap_or(0.0);
            categorical.push(CategoricalTerm {
                index,
                weights: weights.into_iter().collect(),
                other,
                name,
            });
        }
        let clip = match raw.clip {
            Some([lo, hi]) if lo.is_finite() && hi.is_finite() && lo <= hi => Some((lo, hi)),
            Some([lo, hi]) => {
                return Err(invalid(
                    "clip".into(),
                    format!("[{lo}, {hi}] is not a finite range with low <= high"),
                ));
            }
            None => None,
        };
        Ok(Self {
            output: raw.output,
            intercept,
            numeric,
            categorical,
            clip,
        })
    }
}

#[derive(Deserialize)]
struct RawKind {
    kind: String,
}

#[derive(Deserialize)]
struct RawFallback {
    output: String,
    #[serde(default)]
    intercept: f64,
    // BTreeMap keeps the terms in a stable order whatever the file's order.
    #[serde(default)]
    numeric: BTreeMap<String, RawNumeric>,
    #[serde(default)]
    categorical: BTreeMap<String, BTreeMap<String, f64>>,
    #[serde(default)]
    clip: Option<[f64; 2]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNumeric {
    impute: f64,
    mean: f64,
    scale: f64,
    coef: f64,
}
