//! The ONNX artifact run in-process, without any endpoint: what the model
//! computes before serving touches it. Comparing it with the training-time
//! outputs and with the endpoint tells a conversion error from a serving one.

use std::sync::OnceLock;

use ort::value::{DynValue, Tensor};
use preflight_bundle::{Bundle, Datatype, Record, Value};

/// ONNX Runtime for this process, started on first use from where
/// `preflight_ort::find_library` finds it.
fn environment() -> Result<(), String> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            let library = preflight_ort::find_library(None).map_err(|e| e.to_string())?;
            preflight_ort::init(&library, "preflight")
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// Runs `records` through the bundle's model in one batch: one column per
/// manifest output. The error says why the artifact could not run them.
pub(crate) fn predict(bundle: &Bundle, records: &[Record]) -> Result<Vec<Vec<f64>>, String> {
    environment()?;
    let mut session = preflight_ort::session(&bundle.model_path(), 1)
        .map_err(|e| format!("{}: {e}", bundle.manifest().runtime.model))?;
    let n = records.len();
    let manifest = bundle.manifest();
    let mut inputs: Vec<(String, DynValue)> = Vec::new();
    for (i, feature) in manifest.inputs.iter().enumerate() {
        let column = records.iter().map(|r| &r.inputs[i]);
        let shape = [n, 1];
        let e = |e: ort::Error| e.to_string();
        let value = match feature.datatype {
            Datatype::Bytes => {
                let text: Vec<String> = column
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect();
                Tensor::from_string_array((shape, text.as_slice()))
                    .map_err(e)?
                    .into_dyn()
            }
            Datatype::Int64 => Tensor::from_array((
                shape,
                column
                    .map(|v| if let Value::Int(x) = v { *x } else { 0 })
                    .collect::<Vec<i64>>(),
            ))
            .map_err(e)?
            .into_dyn(),
            Datatype::Fp64 => Tensor::from_array((
                shape,
                column
                    .map(|v| v.as_f64().unwrap_or(f64::NAN))
                    .collect::<Vec<f64>>(),
            ))
            .map_err(e)?
            .into_dyn(),
            Datatype::Fp32 => Tensor::from_array((
                shape,
                column
                    .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32)
                    .collect::<Vec<f32>>(),
            ))
            .map_err(e)?
            .into_dyn(),
            other => {
                return Err(format!(
                    "input '{}' is {other}, which the artifact check does not feed yet",
                    feature.name
                ));
            }
        };
        inputs.push((feature.name.clone(), value));
    }
    let outputs = session
        .run(inputs)
        .map_err(|e| e.to_string().trim_end().to_owned())?;
    manifest
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
            let (_, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("output '{}': {e}", feature.name))?;
            Ok(data.iter().map(|&x| f64::from(x)).collect())
        })
        .collect()
}
