//! The ONNX Runtime backend, through the `ort` crate with a dynamically
//! loaded `libonnxruntime` (started by `preflight_ort`).
//!
//! - `binding.rs`: how the manifest's inputs and outputs map onto the
//!   graph's tensors, checked once at load.
//! - `pool.rs`: each model version's sessions.
//! - `tensors.rs`: a decoded batch into input tensors, output tensors back.

mod binding;
mod pool;
mod tensors;

use std::path::Path;
use std::sync::Arc;

use preflight_bundle::Bundle;
use preflight_ort::OrtInitError;

use ort::session::RunOptions;

use crate::model::{Backend, BackendError, Batch, Predictor, Stop, TensorData};
use binding::Binding;
pub use pool::OrtOptions;
use pool::Pool;

/// Starts ONNX Runtime from `library` for this process (named
/// `preflight-serve` in its logs). Later calls do nothing.
pub fn init_ort(library: &Path) -> Result<(), OrtInitError> {
    preflight_ort::init(library, "preflight-serve").map(drop)
}

#[derive(Debug)]
pub struct OrtBackend {
    options: OrtOptions,
}

impl OrtBackend {
    /// A backend; [`init_ort`] must have succeeded first.
    pub fn new(options: OrtOptions) -> Self {
        Self { options }
    }
}

impl Backend for OrtBackend {
    fn load(&self, bundle: &Bundle) -> Result<Arc<dyn Predictor>, BackendError> {
        let file = &bundle.manifest().runtime.model;
        let failed = |e: String| BackendError::Load(format!("{file}: {e}"));
        let pool =
            Pool::new(bundle.model_path(), self.options).map_err(|e| failed(e.to_string()))?;
        let binding = match pool.first().as_ref() {
            Some(session) => Binding::new(session, bundle).map_err(|e| failed(e.to_string()))?,
            None => return Err(failed("no session".to_owned())),
        };
        Ok(Arc::new(OrtPredictor { pool, binding }))
    }

    fn platform(&self) -> &'static str {
        "onnxruntime_onnx"
    }
}

/// One model version: its sessions, and how a batch is fed to them.
struct OrtPredictor {
    pool: Pool,
    binding: Binding,
}

impl Predictor for OrtPredictor {
    fn predict(&self, batch: &Batch, stop: Option<&Stop>) -> Result<Vec<TensorData>, BackendError> {
        let failed = |e: ort::Error| BackendError::Run(e.to_string().trim_end().to_owned());
        let inputs = tensors::inputs(&self.binding.inputs, batch).map_err(failed)?;
        let mut guard = self.pool.session();
        let session = guard
            .as_mut()
            .ok_or_else(|| BackendError::Run("no session".to_owned()))?;
        // ONNX Runtime checks the terminate flag between the graph's nodes.
        let options = match stop {
            Some(stop) => {
                let options = Arc::new(RunOptions::new().map_err(failed)?);
                let terminate = Arc::clone(&options);
                stop.on_request(move || {
                    let _ = terminate.terminate();
                });
                Some(options)
            }
            None => None,
        };
        let outputs = match &options {
            Some(options) => session.run_with_options(inputs, options),
            None => session.run(inputs),
        }
        .map_err(failed)?;
        tensors::outputs(&self.binding.outputs, &outputs)
            .map_err(|e| BackendError::Run(e.to_string()))
    }
}
