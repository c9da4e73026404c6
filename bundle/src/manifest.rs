//! `manifest.toml`: what a bundle holds, the model's inputs and outputs, and
//! the contract a release of it must meet.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::contract::{Contract, LatencyBudget, Monotonic, QualityBudget, SizeBudget, Tolerance};
use crate::error::{Error, ErrorKind, Warning, line_of};
use crate::{Datatype, fs_read_to_string};

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

// The raw shape of the file. Tables are `Spanned` so that a rule broken after
// parsing can still be reported at its line.

#[derive(Deserialize)]
struct RawManifest {
    model: Spanned<ModelInfo>,
    #[serde(default)]
    producer: Producer,
    runtime: Spanned<Runtime>,
    inputs: Vec<Spanned<Feature>>,
    outputs: Vec<Spanned<Feature>>,
    #[serde(default)]
    contract: Option<Spanned<RawContract>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContract {
    parity: Option<Spanned<Tolerance>>,
    latency: Option<Spanned<LatencyBudget>>,
    size: Option<Spanned<SizeBudget>>,
    quality: Option<Spanned<Budgets>>,
    fallback: Option<Spanned<QualityBudget>>,
    #[serde(default)]
    monotonic: Vec<Spanned<Monotonic>>,
    #[serde(default)]
    breaking: Vec<String>,
}

/// `quality = { ... }` or `quality = [{ ... }, { ... }]`, read by what the
/// value is, so that a budget's own error (an unknown key) is the one told.
struct Budgets(Vec<QualityBudget>);

impl Budgets {
    fn into_vec(self) -> Vec<QualityBudget> {
        self.0
    }
}

impl<'de> Deserialize<'de> for Budgets {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Budgets;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a quality budget or a list of them")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Budgets, A::Error> {
                let one =
                    QualityBudget::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Budgets(vec![one]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Budgets, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Budgets)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Validator<'_> {
    fn error<T>(
        &self,
        span: &Spanned<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Error {
        Error::invalid(self.path, message)
            .at_line(Some(line_of(self.text, span.span().start)))
            .at_key(key)
    }

    fn manifest(&self, raw: RawManifest) -> Result<Manifest, Error> {
        let model = &raw.model;
        if !is_valid_model_name(&model.get_ref().name) {
            return Err(self.error(
                model,
                "model.name",
                format!(
                    "'{}' is not a valid model name (lowercase letters, digits, '.', '_' and '-', \
                        starting with a letter or digit, at most 64 characters)",
                    model.get_ref().name
                ),
            ));
        }
        if model.get_ref().version == 0 {
            return Err(self.error(model, "model.version", "versions start at 1"));
        }
        self.runtime(&raw.runtime)?;
        let inputs = self.features(&raw.inputs, "inputs")?;
        let outputs = self.features(&raw.outputs, "outputs")?;
        if let Some(f) = raw.inputs.iter().find(|f| f.get_ref().shape.is_some()) {
            let name = &f.get_ref().name;
            return Err(self.error(
                f,
                format!("inputs.{name}.shape"),
                "an input is one value per row; shape applies to a classifier's probabilities",
            ));
        }
        self.task(model, &raw.outputs)?;
        let contract = match raw.contract {
            Some(contract) => self.contract(contract, &inputs, model.get_ref())?,
            None => Contract::default(),
        };
        Ok(Manifest {
            model: raw.model.into_inner(),
            producer: raw.producer,
            runtime: raw.runtime.into_inner(),
            inputs,
            outputs,
            contract,
            warnings: Vec::new(),
        })
    }

    /// A classifier declares its classes and its two outputs; a regression
    /// model neither.
    fn task(&self, model: &Spanned<ModelInfo>, outputs: &[Spanned<Feature>]) -> Result<(), Error> {
        let info = model.get_ref();
        let shaped = outputs.iter().filter(|o| o.get_ref().shape.is_some());
        let Some(classes) = info.classes.as_deref() else {
            if info.task == Task::Classification {
                return Err(self.error(
                    model,
                    "model.classes",
                    "a classification model lists its classes, in the order of its probability \
                        columns: classes = [\"on_time\", \"late\"]",
                ));
            }
            if let Some(o) = shaped.into_iter().next() {
                return Err(self.error(
                    o,
                    format!("outputs.{}.shape", o.get_ref().name),
                    "shape applies to a classifier's probabilities (task = \"classification\")",
                ));
            }
            return Ok(());
        };
        if info.task != Task::Classification {
            return Err(self.error(
                model,
                "model.classes",
                "classes apply to task = \"classification\"",
            ));
        }
        crate::classes::check(classes, outputs).map_err(|(at, key, message)| match at {
            Some(i) => self.error(&outputs[i], key, message),
            None => self.error(model, key, message),
        })
    }

    fn runtime(&self, runtime: &Spanned<Runtime>) -> Result<(), Error> {
        let r = runtime.get_ref();
        for (key, file) in [
            ("runtime.model", Some(&r.model)),
            ("runtime.fallback", r.fallback.as_ref()),
        ] {
            let Some(file) = file else { continue };
            let p = Path::new(file);
            if file.is_empty()
                || p.is_absolute()
                || p.components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(self.error(
                    runtime,
                    key,
                    format!("'{file}' must be a path inside the bundle, such as \"model.onnx\""),
                ));
            }
        }
        if r.deadline_ms == Some(0) {
            return Err(self.error(runtime, "runtime.deadline_ms", "must be at least 1 ms"));
        }
        Ok(())
    }

    fn features(&self, raw: &[Spanned<Feature>], table: &str) -> Result<Vec<Feature>, Error> {
        if raw.is_empty() {
            return Err(
                Error::invalid(self.path, format!("the manifest declares no [[{table}]]"))
                    .at_key(table),
            );
        }
        let mut seen = HashSet::new();
        for (i, spanned) in raw.iter().enumerate() {
            let f = spanned.get_ref();
            let key = |k: &str| format!("{table}[{i}].{k} ('{}')", f.name);
            let err = |k: &str, message: String| self.error(spanned, key(k), message);
            if f.name.is_empty() {
                return Err(err("name", "must not be empty".into()));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(err("name", format!("'{}' is declared twice", f.name)));
            }
            for (k, bound) in [("min", f.min), ("max", f.max)] {
                match bound {
                    Some(_) if !f.datatype.is_numeric() => {
                        return Err(err(
                            k,
                            format!("bounds apply to numeric datatypes, not {}", f.datatype),
                        ));
                    }
                    Some(b) if !b.is_finite() => {
                        return Err(err(k, format!("{b} is not a finite bound")));
                    }
                    _ => {}
                }
            }
            if let (Some(min), Some(max)) = (f.min, f.max)
                && min > max
            {
                return Err(err("max", format!("{max} is below min {min}")));
            }
            if f.nullable && !f.datatype.is_float() {
                return Err(err(
                    "nullable",
                    format!(
                        "a null reaches the model as NaN, so only FP16, FP32 and FP64 can be \
                            nullable, not {}",
                        f.datatype
                    ),
                ));
            }
            if let Some(categories) = &f.categories {
                if f.datatype != Datatype::Bytes {
                    return Err(err(
                        "categories",
                        format!("categories apply to BYTES, not {}", f.datatype),
                    ));
                }
                if categories.is_empty() {
                    return Err(err("categories", "must list at least one category".into()));
                }
                let mut distinct = HashSet::new();
                if let Some(dup) = categories.iter().find(|c| !distinct.insert(c.as_str())) {
                    return Err(err("categories", format!("'{dup}' is listed twice")));
                }
            }
        }
        Ok(raw.iter().map(|f| f.get_ref().clone()).collect())
    }

    fn contract(
        &self,
        raw: Spanned<RawContract>,
        inputs: &[Feature],
        model: &ModelInfo,
    ) -> Result<Contract, Error> {
        let task = model.task;
        let classes = model.classes.as_deref();
        let raw = raw.into_inner();
        if let Some(parity) = &raw.parity {
            self.check_parity(parity)?;
        }
        if let Some(latency) = &raw.latency {
            self.check_latency(latency)?;
        }
        if let Some(size) = &raw.size {
            self.check_size(size)?;
        }
        let quality = match raw.quality {
            Some(q) => {
                let span = q.span();
                let list = q.into_inner().into_vec();
                let one = list.len() == 1;
                for (i, budget) in list.iter().enumerate() {
                    let key = if one {
                        "contract.quality".to_owned()
                    } else {
                        format!("contract.quality[{i}]")
                    };
                    let spanned = Spanned::new(span.clone(), budget.clone());
                    self.check_quality(&key, &spanned, task)?;
                }
                list
            }
            None => Vec::new(),
        };
        if let Some(fallback) = &raw.fallback {
            self.check_quality("contract.fallback", fallback, task)?;
        }
        for (i, monotonic) in raw.monotonic.iter().enumerate() {
            self.check_monotonic(i, monotonic, inputs, classes)?;
        }
        Ok(Contract {
            parity: raw.parity.map(Spanned::into_inner),
            latency: raw.latency.map(Spanned::into_inner),
            size: raw.size.map(Spanned::into_inner),
            quality,
            fallback: raw.fallback.map(Spanned::into_inner),
            monotonic: raw.monotonic.into_iter().map(Spanned::into_inner).collect(),
            breaking: raw.breaking,
        })
    }

    fn check_parity(&self, p: &Spanned<Tolerance>) -> Result<(), Error> {
        let t = p.get_ref();
        if !(non_negative(t.abs) && non_negative(t.rel)) {
            return Err(self.error(
                p,
                "contract.parity",
                "abs and rel must be finite and not negative",
            ));
        }
        Ok(())
    }

    fn check_latency(&self, l: &Spanned<LatencyBudget>) -> Result<(), Error> {
        let b = l.get_ref();
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !(positive(b.p50_ms) && positive(b.p99_ms) && positive(b.rate_per_s) && b.requests > 0) {
            return Err(self.error(
                l,
                "contract.latency",
                "p50_ms, p99_ms, rate_per_s and requests must be positive",
            ));
        }
        if b.p50_ms > b.p99_ms {
            return Err(self.error(
                l,
                "contract.latency.p99_ms",
                format!("{} is below p50_ms {}", b.p99_ms, b.p50_ms),
            ));
        }
        for (key, limit) in [
            ("max_p99_regression", b.max_p99_regression),
            ("max_p50_regression", b.max_p50_regression),
        ] {
            if limit.is_some_and(|r| !non_negative(r)) {
                return Err(self.error(
                    l,
                    format!("contract.latency.{key}"),
                    "must not be negative",
                ));
            }
        }
        if b.max_fallback_rate
            .is_some_and(|r| !(non_negative(r) && r <= 1.0))
        {
            return Err(self.error(
                l,
                "contract.latency.max_fallback_rate",
                "must be a share between 0 and 1",
            ));
        }
        Ok(())
    }

    fn check_size(&self, s: &Spanned<SizeBudget>) -> Result<(), Error> {
        let b = s.get_ref();
        if b.max_model_bytes.is_none() && b.max_memory_bytes.is_none() && b.max_growth.is_none() {
            return Err(self.error(
                s,
                "contract.size",
                "give max_model_bytes, max_memory_bytes or max_growth",
            ));
        }
        if b.max_growth.is_some_and(|g| !non_negative(g)) {
            return Err(self.error(s, "contract.size.max_growth", "must not be negative"));
        }
        Ok(())
    }

    /// A `[contract.quality]` or `[contract.fallback]` table, at `key`.
    fn check_quality(
        &self,
        key: &str,
        q: &Spanned<QualityBudget>,
        task: crate::Task,
    ) -> Result<(), Error> {
        let b = q.get_ref();
        let fits_task = match task {
            crate::Task::Regression => b.metric.for_regression(),
            crate::Task::Classification => !b.metric.for_regression(),
        };
        if !fits_task {
            return Err(self.error(
                q,
                format!("{key}.metric"),
                format!("'{}' does not apply to a {task:?} model", b.metric.as_str())
                    .to_lowercase(),
            ));
        }
        let (wanted, other, unwanted) = if b.metric.higher_is_better() {
            ("min", "max", b.max)
        } else {
            ("max", "min", b.min)
        };
        if unwanted.is_some() {
            return Err(self.error(
                q,
                format!("{key}.{other}"),
                format!(
                    "'{}' is bounded by {wanted}, not {other}",
                    b.metric.as_str()
                ),
            ));
        }
        if b.max_regression.is_some_and(|r| !non_negative(r)) {
            return Err(self.error(q, format!("{key}.max_regression"), "must not be negative"));
        }
        Ok(())
    }

    fn check_monotonic(
        &self,
        i: usize,
        m: &Spanned<Monotonic>,
        inputs: &[Feature],
        classes: Option<&[crate::Class]>,
    ) -> Result<(), Error> {
        let name = &m.get_ref().input;
        let problem = match inputs.iter().find(|f| &f.name == name) {
            None => format!("'{name}' is not an input of the model"),
            Some(f) if !f.datatype.is_numeric() => {
                format!("'{name}' is {}, not numeric", f.datatype)
            }
            Some(_) => return self.check_monotonic_class(i, m, classes),
        };
        Err(self.error(m, format!("contract.monotonic[{i}].input"), problem))
    }

    /// A classifier's constraint names the class whose probability it
    /// holds, one of its classes; a regressor's names none.
    fn check_monotonic_class(
        &self,
        i: usize,
        m: &Spanned<Monotonic>,
        classes: Option<&[crate::Class]>,
    ) -> Result<(), Error> {
        let problem = match (&m.get_ref().class, classes) {
            (None, None) => return Ok(()),
            (Some(c), Some(classes)) if classes.contains(c) => return Ok(()),
            (Some(c), Some(_)) => format!("{c} is not a class of the model"),
            (Some(_), None) => "a class applies to a classifier's constraint".to_owned(),
            (None, Some(_)) => {
                "a classifier's constraint names the class whose probability it holds: \
                    class = ..."
                    .to_owned()
            }
        };
        Err(self.error(m, format!("contract.monotonic[{i}].class"), problem))
    }
}

/// False for negative numbers, NaN and infinity.
fn non_negative(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}
