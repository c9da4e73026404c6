//! The ONNX artifact run in-process, without any endpoint: what the model
//! computes before serving touches it. Comparing it with the training-time
//! outputs and with the endpoint tells a conversion error from a serving one.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::{DynValue, Tensor};
use preflight_bundle::{Bundle, Datatype, Record, Value};

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The ONNX Runtime library: `ORT_DYLIB_PATH`, else `target/ort/` above the
/// running executable, where `cargo xtask ort` puts it.
fn library() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .flat_map(|d| {
            [
                d.join("ort/libonnxruntime.so"),
                d.join("target/ort/libonnxruntime.so"),
            ]
        })
        .find(|p| p.is_file())
}

fn environment() -> Result<&'static Environment, String> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = library().ok_or(
                "the ONNX Runtime library was not found; set ORT_DYLIB_PATH \
                or run `cargo xtask ort`",
            )?;
            let builder =
                ort::init_from(&path).map_err(|e| format!("{}: {e:?}", path.display()))?;
            builder
                .with_name("preflight")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Runs `records` through the bundle's model in one batch: one column per
/// manifest output. The error says why the artifact could not run them.
pub(crate) fn predict(bundle: &Bundle, records: &[Record]) -> Result<Vec<Vec<f64>>, String> {
    let environment = environment()?;
    let path: &Path = &bundle.model_path();
    let build = || -> ort::Result<Session> {
        Session::builder(environment)?
            .with_intra_threads(1)?
            .commit_from_file(path)
    };
    let mut session = build().map_err(|e| {
        format!(
            "{}: ONNX Runtime cannot load it: {e}",
            bundle.manifest().runtime.model
        )
    })?;
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
