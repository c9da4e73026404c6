//! The seam between the HTTP layer and the model runtimes.

use std::sync::Arc;

use preflight_bundle::Bundle;

use crate::batch::Batch;
use crate::protocol::TensorData;

/// A loaded main model that predicts a batch.
///
/// Implementations are shared by every request of the model, on any thread.
pub trait Predictor: Send + Sync + 'static {
    /// Every manifest output for every row, in manifest order.
    fn predict(&self, batch: &Batch) -> Result<Vec<TensorData>, String>;
}

/// A model runtime: turns a bundle's main artifact into a [`Predictor`].
pub trait Backend: Send + Sync + 'static {
    /// Loads the bundle's model; the error names what failed and why.
    fn load(&self, bundle: &Bundle) -> Result<Arc<dyn Predictor>, String>;

    /// The `platform` reported in model metadata, such as `onnxruntime_onnx`.
    fn platform(&self) -> &'static str;
}
