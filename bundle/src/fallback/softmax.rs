//! A classifier's `softmax` fallback: the linear form's numbers, one per
//! class, bound as one linear fallback per class.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{LinearFallback, RawFallback, RawNumeric, check_probabilities};
use crate::error::Error;
use crate::manifest::Manifest;

/// `softmax`: the linear form's numbers, one per class.
#[derive(Deserialize)]
pub(super) struct RawSoftmax {
    output: String,
    intercept: Vec<f64>,
    #[serde(default)]
    numeric: BTreeMap<String, RawNumerics>,
    #[serde(default)]
    categorical: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNumerics {
    impute: f64,
    mean: f64,
    scale: f64,
    coef: Vec<f64>,
}

impl RawSoftmax {
    /// One linear form per class, each bound as a linear fallback is.
    pub(super) fn bind(
        self,
        path: &Path,
        manifest: &Manifest,
    ) -> Result<Vec<LinearFallback>, Error> {
        check_probabilities(&self.output, path, manifest)?;
        let k = manifest.classifier().map_or(0, |c| c.k());
        let per_class = |key: String, n: usize| {
            if n == k {
                Ok(())
            } else {
                Err(
                    Error::invalid(path, format!("holds {n} numbers, not one per class ({k})"))
                        .at_key(key),
                )
            }
        };
        per_class("intercept".into(), self.intercept.len())?;
        for (name, t) in &self.numeric {
            per_class(format!("numeric.{name}.coef"), t.coef.len())?;
        }
        for (name, weights) in &self.categorical {
            for (category, w) in weights {
                per_class(format!("categorical.{name}.{category}"), w.len())?;
            }
        }
        (0..k)
            .map(|class| {
                let raw = RawFallback {
                    output: self.output.clone(),
                    intercept: self.intercept[class],
                    numeric: (self.numeric.iter())
                        .map(|(name, t)| {
                            let term = RawNumeric {
                                impute: t.impute,
                                mean: t.mean,
                                scale: t.scale,
                                coef: t.coef[class],
                            };
                            (name.clone(), term)
                        })
                        .collect(),
                    categorical: (self.categorical.iter())
                        .map(|(name, weights)| {
                            let w = weights.iter().map(|(c, w)| (c.clone(), w[class])).collect();
                            (name.clone(), w)
                        })
                        .collect(),
                    clip: None,
                };
                LinearFallback::bind(raw, path, manifest)
            })
            .collect()
    }
}
