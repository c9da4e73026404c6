//! The ONNX artifact run in-process, without any endpoint: what the model
//! computes before serving touches it. Comparing it with the training-time
//! outputs and with the endpoint tells a conversion error from a serving one.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::Session;
use ort::value::{DynValue, Tensor};
use preflight_bundle::{Bundle, Datatype, Feature, Manifest, Record, Value};

/// The library `--ort-lib` names, if it does.
static LIBRARY: OnceLock<PathBuf> = OnceLock::new();

/// Runs the artifact with the library at `path` instead of where
/// `preflight_ort::find_library` looks: call it before the first run.
pub(crate) fn use_library(path: &Path) {
    let _ = LIBRARY.set(path.to_path_buf());
}

/// ONNX Runtime for this process, started on first use from the library
/// given to [`use_library`], else where `preflight_ort::find_library` finds it.
fn environment() -> Result<(), String> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            let library = preflight_ort::find_library(LIBRARY.get().map(PathBuf::as_path))
                .map_err(|e| e.to_string())?;
            preflight_ort::init(&library, "preflight")
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// Runs `records` through the bundle's model in one batch: one column per
/// manifest output. The error says why the artifact could not run them.
///
/// The harness feeds the artifact itself, independently of the server, on
/// purpose: a binding bug in serving then shows as a divergence at
/// *artifact → endpoint* instead of being shared by both sides. It feeds the
/// graph as the server does: one input per manifest input by name, or the
/// manifest's inputs stacked into the graph's one float input.
pub(crate) fn predict(bundle: &Bundle, records: &[Record]) -> Result<Vec<Vec<f64>>, String> {
    predict_with(bundle, records, preflight_ort::session)
}

/// [`predict`] on a session `make` makes.
fn predict_with(
    bundle: &Bundle,
    records: &[Record],
    make: fn(&Path, usize) -> Result<Session, preflight_ort::SessionError>,
) -> Result<Vec<Vec<f64>>, String> {
    environment()?;
    let manifest = bundle.manifest();
    let mut session =
        make(&bundle.model_path(), 1).map_err(|e| format!("{}: {e}", manifest.runtime.model))?;
    let graph: Vec<String> = session
        .inputs()
        .iter()
        .map(|i| i.name().to_owned())
        .collect();
    let by_name = manifest
        .inputs
        .iter()
        .all(|f| graph.iter().any(|g| g == &f.name));
    let inputs: Vec<(String, DynValue)> = match graph.as_slice() {
        _ if by_name => manifest
            .inputs
            .iter()
            .enumerate()
            .map(|(i, feature)| Ok((feature.name.clone(), column(feature, i, records)?)))
            .collect::<Result<_, String>>()?,
        [only] => vec![(only.clone(), stacked(manifest, records)?)],
        _ => {
            return Err(format!(
                "the graph's inputs ({}) are neither the manifest's inputs nor one input to \
                stack them into",
                graph.join(", ")
            ));
        }
    };
    let outputs = session
        .run(inputs)
        .map_err(|e| e.to_string().trim_end().to_owned())?;
    let tensors = manifest
        .outputs
        .iter()
        .map(|feature| {
            // A single output is matched whatever the exporter named it.
            let name = if manifest.outputs.len() == 1 && outputs.len() == 1 {
                outputs.keys().next().unwrap_or_default().to_owned()
            } else {
                feature.name.clone()
            };
            let value = outputs
                .get(name.as_str())
                .ok_or_else(|| format!("the graph has no output '{}'", feature.name))?;
            let data = data(value).map_err(|e| format!("output '{}': {e}", feature.name))?;
            Ok(serde_json::json!({ "name": feature.name, "data": data }))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // Read as an answer is: one column per slot (a classifier's label and probabilities).
    crate::slots::columns(manifest, &tensors, records.len())
}

/// The value of one row of one input as the artifact takes it, or why it
/// cannot be fed: never a silent stand-in.
fn fed<T>(
    feature: &Feature,
    record: &Record,
    value: &Value,
    read: impl Fn(&Value) -> Option<T>,
) -> Result<T, String> {
    read(value).ok_or_else(|| {
        format!(
            "row '{}': input '{}' is {} and its value {} cannot be fed to the artifact",
            record.id,
            feature.name,
            feature.datatype,
            value.to_json()
        )
    })
}

/// One manifest input as a `[n, 1]` tensor of its datatype.
fn column(feature: &Feature, index: usize, records: &[Record]) -> Result<DynValue, String> {
    let shape = [records.len(), 1];
    let e = |e: ort::Error| format!("input '{}': {e}", feature.name);
    fn each<T>(
        feature: &Feature,
        index: usize,
        records: &[Record],
        read: impl Fn(&Value) -> Option<T>,
    ) -> Result<Vec<T>, String> {
        records
            .iter()
            .map(|r| fed(feature, r, &r.inputs[index], &read))
            .collect()
    }
    // A null of a nullable (float) input reaches the model as NaN.
    let float = |v: &Value| v.as_f64();
    let int = |v: &Value| match v {
        Value::Int(x) => Some(*x),
        _ => None,
    };
    Ok(match feature.datatype {
        Datatype::Bytes => {
            let text = each(feature, index, records, |v| v.as_str().map(str::to_owned))?;
            Tensor::from_string_array((shape, text.as_slice()))
                .map_err(e)?
                .into_dyn()
        }
        Datatype::Int64 => {
            let data = each(feature, index, records, int)?;
            Tensor::from_array((shape, data)).map_err(e)?.into_dyn()
        }
        Datatype::Int32 => {
            let data = each(feature, index, records, |v| i32::try_from(int(v)?).ok())?;
            Tensor::from_array((shape, data)).map_err(e)?.into_dyn()
        }
        Datatype::Bool => {
            let data = each(feature, index, records, |v| match v {
                Value::Bool(b) => Some(*b),
                _ => None,
            })?;
            Tensor::from_array((shape, data)).map_err(e)?.into_dyn()
        }
        Datatype::Fp64 => {
            let data = each(feature, index, records, float)?;
            Tensor::from_array((shape, data)).map_err(e)?.into_dyn()
        }
        Datatype::Fp32 => {
            let data = each(feature, index, records, |v| float(v).map(|x| x as f32))?;
            Tensor::from_array((shape, data)).map_err(e)?.into_dyn()
        }
        other => {
            return Err(format!(
                "input '{}' is {other}, which the artifact check does not feed",
                feature.name
            ));
        }
    })
}

/// Every manifest input side by side in one `[n, k]` FP32 tensor, as the
/// server feeds a graph with one input.
fn stacked(manifest: &Manifest, records: &[Record]) -> Result<DynValue, String> {
    let k = manifest.inputs.len();
    let mut data = Vec::with_capacity(records.len() * k);
    for record in records {
        for (feature, value) in manifest.inputs.iter().zip(&record.inputs) {
            data.push(fed(feature, record, value, |v| match v {
                Value::Text(_) => None,
                other => other.as_f64().map(|x| x as f32),
            })?);
        }
    }
    Tensor::from_array(([records.len(), k], data))
        .map(|t| t.into_dyn())
        .map_err(|e| e.to_string())
}

/// An output tensor's values as numbers, whatever its numeric type.
/// An output tensor's values, flat, as JSON: numbers, or a label's strings.
fn data(value: &DynValue) -> Result<serde_json::Value, String> {
    use serde_json::json;
    if let Ok((_, data)) = value.try_extract_tensor::<f32>() {
        return Ok(json!(
            data.iter().map(|&x| f64::from(x)).collect::<Vec<_>>()
        ));
    }
    if let Ok((_, data)) = value.try_extract_tensor::<f64>() {
        return Ok(json!(data));
    }
    if let Ok((_, data)) = value.try_extract_tensor::<i64>() {
        return Ok(json!(data));
    }
    if let Ok((_, data)) = value.try_extract_strings() {
        return Ok(json!(data));
    }
    value
        .try_extract_tensor::<i32>()
        .map(|(_, data)| json!(data))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's sessions, made from ONNX Runtime's own format, answer
    /// every fixture's samples bit for bit as sessions on the ONNX file do.
    #[test]
    fn a_lean_session_answers_as_the_onnx_file_does() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models");
        let mut compared = 0;
        for model in std::fs::read_dir(&models).expect("fixtures/models") {
            let model = model.expect("a fixture folder").path();
            for version in std::fs::read_dir(&model).expect("a model's versions") {
                let dir = version.expect("a version folder").path();
                let bundle = Bundle::open(&dir).unwrap_or_else(|e| panic!("{e}"));
                let samples = bundle.samples().unwrap_or_else(|e| panic!("{e}"));
                let samples = samples.unwrap_or_else(|| panic!("{}: no samples", dir.display()));
                let plain = predict_with(&bundle, &samples, preflight_ort::session);
                let lean = predict_with(&bundle, &samples, preflight_ort::lean_session);
                let (plain, lean) = (plain.expect("plain"), lean.expect("lean"));
                let bits = |o: &[Vec<f64>]| -> Vec<Vec<u64>> {
                    o.iter()
                        .map(|c| c.iter().map(|x| x.to_bits()).collect())
                        .collect()
                };
                assert_eq!(bits(&plain), bits(&lean), "{}", dir.display());
                assert!(plain.iter().all(|c| c.len() == samples.len()));
                compared += 1;
            }
        }
        assert!(compared >= 6, "only {compared} fixture versions");
    }
}
