//! `manifest.toml`: what a bundle holds, the model's inputs and outputs, and
//! the contract a release of it must meet.

mod budgets;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::contract::Contract;
use crate::error::{Error, ErrorKind, Warning, line_of};
use crate::{Datatype, fs_read_to_string};
use raw::RawManifest;
use validate::Validator;

/// A parsed and validated `manifest.toml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Manifest {
    pub model: ModelInfo,
    pub producer: Producer,
    pub runtime: Runtime,
    /// One entry per feature, in the order the format gives them.
    pub inputs: Vec<Feature>,
    pub outputs: Vec<Feature>,
    pub contract: Contract,
    /// Keys the format does not know, which nothing reads.
    #[serde(skip)]
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelInfo {
    pub name: String,
    pub version: u64,
    pub task: Task,
    #[serde(default)]
    pub description: Option<String>,
    /// A classifier's classes, in the order of its probability columns.
    #[serde(default)]
    pub classes: Option<Vec<crate::Class>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Regression,
    Classification,
}

/// The pinned training environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Producer {
    #[serde(default)]
    pub python: Option<String>,
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Runtime {
    /// The main model's file, relative to the bundle.
    pub model: String,
    /// The fast fallback's file, relative to the bundle.
    #[serde(default)]
    pub fallback: Option<String>,
    /// The main model's budget before the fallback answers.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
}

/// One input or output of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Feature {
    pub name: String,
    pub datatype: Datatype,
    /// JSON `null` is accepted and reaches the model as NaN.
    #[serde(default)]
    pub nullable: bool,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    /// `[-1, K]`: K values per row, a classifier's probabilities (outputs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<i64>>,
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = fs_read_to_string(path)?;
        Self::parse(&text, path)
    }

    /// Parses and validates manifest text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let syntax = |e: toml::de::Error| {
            let line = e.span().map(|span| line_of(text, span.start));
            Error::new(ErrorKind::Syntax, path, e.message().trim_end().to_owned()).at_line(line)
        };
        let table: toml::Table = toml::from_str(text).map_err(syntax)?;
        let raw: RawManifest = toml::from_str(text).map_err(syntax)?;
        let mut manifest = Validator { text, path }.manifest(raw)?;
        manifest.warnings = crate::unknown::unknown_keys(text, &table, path);
        Ok(manifest)
    }

    pub fn input(&self, name: &str) -> Option<(usize, &Feature)> {
        self.inputs.iter().enumerate().find(|(_, f)| f.name == name)
    }

    pub fn output(&self, name: &str) -> Option<(usize, &Feature)> {
        self.outputs
            .iter()
            .enumerate()
            .find(|(_, f)| f.name == name)
    }
}

/// Whether `name` is a valid model name: `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn is_valid_model_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}
