//! The rules of `manifest.toml` beyond its shape: the model, its runtime
//! and its inputs and outputs (the contract's are in `budgets.rs`).

use std::collections::HashSet;
use std::path::Path;

use toml::Spanned;

use super::raw::RawManifest;
use super::{Feature, Manifest, ModelInfo, Runtime, Task, is_valid_model_name};
use crate::Datatype;
use crate::contract::Contract;
use crate::error::{Error, line_of};

pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a Path,
}

impl Validator<'_> {
    pub(super) fn error<T>(
        &self,
        span: &Spanned<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Error {
        Error::invalid(self.path, message)
            .at_line(Some(line_of(self.text, span.span().start)))
            .at_key(key)
    }

    pub(super) fn manifest(&self, raw: RawManifest) -> Result<Manifest, Error> {
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
}
