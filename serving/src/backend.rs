//! The seam between the HTTP layer and the model runtimes.

use std::sync::Arc;

use preflight_bundle::Bundle;

use crate::batch::Batch;
use crate::protocol::TensorData;

/// Why a runtime could not load or run a model. The message names the
/// artifact, tensor or output at fault. It is never a status of its own: on
/// a request, the fallback answers, or `ApiError` says the model failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The artifact cannot be loaded, or its graph does not match the manifest.
    #[error("{0}")]
    Load(String),
    /// A batch could not be run, or its outputs could not be read.
    #[error("{0}")]
    Run(String),
}

/// A loaded main model that predicts a batch.
///
/// Implementations are shared by every request of the model, on any thread.
pub trait Predictor: Send + Sync + 'static {
    /// Every manifest output for every row, in manifest order.
    fn predict(&self, batch: &Batch) -> Result<Vec<TensorData>, BackendError>;
}

/// A model runtime: turns a bundle's main artifact into a [`Predictor`].
pub trait Backend: Send + Sync + 'static {
    /// Loads the bundle's model; the error names what failed and why.
    fn load(&self, bundle: &Bundle) -> Result<Arc<dyn Predictor>, BackendError>;

    /// The `platform` reported in model metadata, such as `onnxruntime_onnx`.
    fn platform(&self) -> &'static str;
}
