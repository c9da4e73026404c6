//! `reference.json`: statistics of the training data and of the training
//! predictions, for drift monitoring and realistic generated inputs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::fs_read_to_string;
use crate::manifest::Manifest;

/// Per-input and per-output statistics of the training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Reference {
    /// Rows of training data the statistics describe.
    pub rows: u64,
    pub inputs: BTreeMap<String, Stats>,
    /// Statistics of the training predictions, by output.
    #[serde(default)]
    pub outputs: BTreeMap<String, Stats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Stats {
    Numeric(NumericStats),
    Categorical(CategoricalStats),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NumericStats {
    pub count: u64,
    pub null_fraction: f64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// A histogram on quantile bin edges.
    #[serde(default)]
    pub bins: Option<Bins>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Bins {
    /// Increasing edges; bin i is `[edges[i], edges[i+1])`, the last one closed.
    pub edges: Vec<f64>,
    /// The share of non-null values in each bin; one fewer than the edges.
    pub frequencies: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CategoricalStats {
    pub count: u64,
    pub null_fraction: f64,
    /// The share of each category among non-null values.
    pub categories: BTreeMap<String, f64>,
}

/// How far a set of shares may sum from 1 (they are rounded when written).
const SHARE_SUM_TOLERANCE: f64 = 1e-3;

impl Reference {
    pub fn load(path: &Path, manifest: &Manifest) -> Result<Self, Error> {
        let text = fs_read_to_string(path)?;
        Self::parse(&text, path, manifest)
    }

    /// Parses `reference.json` text and checks it against the manifest.
    pub fn parse(text: &str, path: &Path, manifest: &Manifest) -> Result<Self, Error> {
        let reference: Reference = serde_json::from_str(text).map_err(|e| {
            Error::new(ErrorKind::Syntax, path, format!("{e}")).at_line(Some(e.line()))
        })?;
        let invalid = |key: String, message: String| Error::invalid(path, message).at_key(key);
        for (table, stats, features) in [
            ("inputs", &reference.inputs, &manifest.inputs),
            ("outputs", &reference.outputs, &manifest.outputs),
        ] {
            for (name, s) in stats {
                let key = |k: &str| format!("{table}.{name}.{k}");
                if !features.iter().any(|f| &f.name == name) {
                    return Err(invalid(
                        format!("{table}.{name}"),
                        format!("'{name}' is not one of the manifest's {table}"),
                    ));
                }
                let (null_fraction, shares, share_key) =
                    match s {
                        Stats::Numeric(n) => {
                            if let Some(bins) = &n.bins {
                                if bins.edges.len() != bins.frequencies.len() + 1 {
                                    return Err(invalid(
                                        key("bins"),
                                        format!(
                                            "{} edges need {} frequencies, not {}",
                                            bins.edges.len(),
                                            bins.edges.len().saturating_sub(1),
                                            bins.frequencies.len()
                                        ),
                                    ));
                                }
                                if bins.edges.windows(2).any(|w| {
                                    w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less)
                                }) {
                                    return Err(invalid(
                                        key("bins.edges"),
                                        "must be strictly increasing".into(),
                                    ));
                                }
                            }
                            (
                                n.null_fraction,
                                n.bins.as_ref().map(|b| b.frequencies.clone()),
                                "bins.frequencies",
                            )
                        }
                        Stats::Categorical(c) => (
                            c.null_fraction,
                            Some(c.categories.values().copied().collect()),
                            "categories",
                        ),
                    };
                if !(0.0..=1.0).contains(&null_fraction) {
                    return Err(invalid(
                        key("null_fraction"),
                        format!("{null_fraction} is not a share between 0 and 1"),
                    ));
                }
                if let Some(shares) = shares.filter(|s| !s.is_empty()) {
                    let sum: f64 = shares.iter().sum();
                    if shares.iter().any(|s| !(0.0..=1.0).contains(s))
                        || (sum - 1.0).abs() > SHARE_SUM_TOLERANCE
                    {
                        return Err(invalid(
                            key(share_key),
                            format!("shares must lie in [0, 1] and sum to 1 (they sum to {sum})"),
                        ));
                    }
                }
            }
        }
        Ok(reference)
    }
}
