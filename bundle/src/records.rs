//! `samples.jsonl`, `probes.jsonl` and `holdout.jsonl`: rows of inputs with
//! the outputs the training process gave, or the true target.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::error::{Error, ErrorKind};
use crate::manifest::{Feature, Manifest};
use crate::{Value, fs_read_to_string};

/// One row of a samples or hold-out file, typed by the manifest.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Record {
    /// The 1-based line in its file.
    pub line: usize,
    /// The row's `id`, or `line N` where the file gives none.
    pub id: String,
    /// One value per manifest input, in manifest order.
    pub inputs: Vec<Value>,
    /// One value per manifest output: the training process's predictions.
    pub outputs: Option<Vec<Value>>,
    /// The fast fallback's predictions in the training process (a Preflight extension).
    pub fallback_outputs: Option<Vec<Value>>,
    /// One value per manifest output: the true target (hold-out rows).
    pub target: Option<Vec<Value>>,
    /// The split a probe row sits beside (probe rows).
    pub probe: Option<Split>,
}

impl Record {
    /// A probe row made from a sample's inputs rather than read from a file
    /// (the harness derives them from the graph for a bundle without
    /// `probes.jsonl`); it has no training-time outputs until given some.
    pub fn probe(id: String, inputs: Vec<Value>, split: Split) -> Self {
        Self {
            line: 0,
            id,
            inputs,
            outputs: None,
            fallback_outputs: None,
            target: None,
            probe: Some(split),
        }
    }

    /// The row with `outputs` as the outputs it is expected to give.
    pub fn with_outputs(mut self, outputs: Vec<Value>) -> Self {
        self.outputs = Some(outputs);
        self
    }
}

/// One split of the model's trees, as a probe row names it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// The manifest input the probe moved.
    pub input: String,
    /// The column of the trees' input matrix the split reads.
    pub column: u64,
    /// The split's threshold on that column.
    pub threshold: f64,
}

/// Which file a set of records comes from, and so what each row must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFile {
    /// `samples.jsonl`: every row has `outputs`.
    Samples,
    /// `holdout.jsonl`: every row has `target`.
    Holdout,
    /// `probes.jsonl`: every row has `outputs` and the `probe` it sits at.
    Probes,
}

#[derive(Deserialize)]
struct RawRecord {
    #[serde(default)]
    id: Option<String>,
    inputs: Map<String, Json>,
    #[serde(default)]
    outputs: Option<Map<String, Json>>,
    #[serde(default)]
    fallback_outputs: Option<Map<String, Json>>,
    #[serde(default)]
    target: Option<Map<String, Json>>,
    #[serde(default)]
    probe: Option<Json>,
}

/// Reads a JSON Lines file of records and checks each against the manifest.
pub fn read_records(
    path: &Path,
    manifest: &Manifest,
    file: RecordFile,
) -> Result<Vec<Record>, Error> {
    let text = fs_read_to_string(path)?;
    parse_records(&text, path, manifest, file)
}

/// Parses JSON Lines text of records; `path` is only used in errors.
pub fn parse_records(
    text: &str,
    path: &Path,
    manifest: &Manifest,
    file: RecordFile,
) -> Result<Vec<Record>, Error> {
    let mut records = Vec::new();
    let mut ids = HashSet::new();
    let classifier = manifest.classifier();
    for (index, line_text) in text.lines().enumerate() {
        let line = index + 1;
        if line_text.trim().is_empty() {
            continue;
        }
        let fail = |kind, key: &str, message: String| {
            Error::new(kind, path, message)
                .at_line(Some(line))
                .at_key(key)
        };
        let raw: RawRecord = serde_json::from_str(line_text).map_err(|e| {
            // serde_json's message ends with its own "at line 1 column N":
            // within one line of the file only the column means anything.
            let text = e.to_string();
            let reason = text
                .rfind(" at line ")
                .map_or(text.as_str(), |end| &text[..end]);
            let message = format!("not a JSON record: {reason} (column {})", e.column());
            Error::new(ErrorKind::Syntax, path, message).at_line(Some(line))
        })?;
        let id = raw.id.unwrap_or_else(|| format!("line {line}"));
        if !ids.insert(id.clone()) {
            return Err(fail(
                ErrorKind::Conformance,
                "id",
                format!("'{id}' is used by an earlier row"),
            ));
        }
        let conform =
            |key: &str, map: &Map<String, Json>, features: &[Feature], check_domain: bool| {
                read_row(map, features, check_domain).map_err(|(name, message)| {
                    fail(
                        ErrorKind::Conformance,
                        &format!("{key}.{name}"),
                        format!("row '{id}': {message}"),
                    )
                })
            };
        let inputs = conform("inputs", &raw.inputs, &manifest.inputs, true)?;
        let outputs = raw
            .outputs
            .as_ref()
            .map(|m| conform("outputs", m, &manifest.outputs, true))
            .transpose()?;
        let fallback_outputs = raw
            .fallback_outputs
            .as_ref()
            .map(|m| conform("fallback_outputs", m, &manifest.outputs, true))
            .transpose()?;
        // The true target may lie outside the range the model's outputs are held to.
        // A classifier's target is its label alone; the probabilities' slot is null.
        let target = match classifier {
            None => raw
                .target
                .as_ref()
                .map(|m| conform("target", m, &manifest.outputs, false))
                .transpose()?,
            Some(c) => raw
                .target
                .as_ref()
                .map(|m| {
                    let label = &manifest.outputs[c.label];
                    let [value] = <[Value; 1]>::try_from(conform(
                        "target",
                        m,
                        std::slice::from_ref(label),
                        false,
                    )?)
                    .map_err(|_| fail(ErrorKind::Conformance, "target", String::new()))?;
                    let mut row = vec![Value::Null; manifest.outputs.len()];
                    row[c.label] = value;
                    Ok(row)
                })
                .transpose()?,
        };
        if let Some(c) = classifier {
            for (key, row) in [
                ("outputs", &outputs),
                ("fallback_outputs", &fallback_outputs),
                ("target", &target),
            ] {
                let Some(label) = row.as_ref().map(|r| &r[c.label]) else {
                    continue;
                };
                if c.index(label).is_none() {
                    let name = &manifest.outputs[c.label].name;
                    let classes: Vec<String> = c.classes.iter().map(ToString::to_string).collect();
                    return Err(fail(
                        ErrorKind::Conformance,
                        &format!("{key}.{name}"),
                        format!(
                            "row '{id}': '{name}' = {} is not one of the classes [{}]",
                            label.to_json(),
                            classes.join(", ")
                        ),
                    ));
                }
            }
        }
        let probe = raw
            .probe
            .map(|json| read_split(json, &manifest.inputs))
            .transpose()
            .map_err(|message| {
                fail(
                    ErrorKind::Conformance,
                    "probe",
                    format!("row '{id}': {message}"),
                )
            })?;
        match file {
            RecordFile::Probes if outputs.is_none() || probe.is_none() => {
                let missing = if outputs.is_none() {
                    "outputs"
                } else {
                    "probe"
                };
                return Err(fail(
                    ErrorKind::Conformance,
                    missing,
                    format!(
                        "row '{id}' has no {missing}; a probe row needs the training process's \
                            prediction and the split it sits at"
                    ),
                ));
            }
            RecordFile::Samples if outputs.is_none() => {
                return Err(fail(
                    ErrorKind::Conformance,
                    "outputs",
                    format!(
                        "row '{id}' has no outputs; a verification sample needs the training \
                            process's prediction"
                    ),
                ));
            }
            RecordFile::Holdout if target.is_none() => {
                return Err(fail(
                    ErrorKind::Conformance,
                    "target",
                    format!("row '{id}' has no target; a hold-out row needs the true value"),
                ));
            }
            _ => {}
        }
        records.push(Record {
            line,
            id,
            inputs,
            outputs,
            fallback_outputs,
            target,
            probe,
        });
    }
    if records.is_empty() {
        return Err(Error::new(
            ErrorKind::Conformance,
            path,
            "the file has no rows",
        ));
    }
    Ok(records)
}

/// A probe row's `probe`: its split, on an input the manifest declares.
fn read_split(json: Json, inputs: &[Feature]) -> Result<Split, String> {
    let split: Split = serde_json::from_value(json)
        .map_err(|e| format!("'probe' is not {{input, column, threshold}}: {e}"))?;
    if !inputs.iter().any(|f| f.name == split.input) {
        return Err(format!(
            "'probe.input' = '{}' is not declared in the manifest",
            split.input
        ));
    }
    Ok(split)
}

/// Reads a map of name to value into manifest order; on failure, the name at fault and why.
fn read_row(
    map: &Map<String, Json>,
    features: &[Feature],
    check_domain: bool,
) -> Result<Vec<Value>, (String, String)> {
    if let Some(unknown) = map.keys().find(|k| !features.iter().any(|f| &f.name == *k)) {
        let known: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
        return Err((
            unknown.clone(),
            format!(
                "'{unknown}' is not declared in the manifest (declared: {})",
                known.join(", ")
            ),
        ));
    }
    features
        .iter()
        .map(|f| {
            let json = map
                .get(&f.name)
                .ok_or_else(|| (f.name.clone(), format!("'{}' is missing", f.name)))?;
            let value = f
                .read(json)
                .map_err(|m| (f.name.clone(), format!("'{}' {m}", f.name)))?;
            if check_domain {
                f.check_domain(&value)
                    .map_err(|m| (f.name.clone(), format!("'{}' = {m}", f.name)))?;
            }
            Ok(value)
        })
        .collect()
}
