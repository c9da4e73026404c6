//! The seam between the HTTP layer and the model runtimes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use preflight_bundle::Bundle;

use super::batch::Batch;
use super::column::TensorData;

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
    /// Every manifest output for every row, in manifest order. With a
    /// `stop`, the run ends early, with an error, once it is requested.
    fn predict(&self, batch: &Batch, stop: Option<&Stop>) -> Result<Vec<TensorData>, BackendError>;
}

type Hook = Box<dyn Fn() + Send + Sync>;

/// Asks a running prediction to stop: nobody waits for its answer any more,
/// and the core it holds is wanted.
#[derive(Default)]
pub struct Stop {
    requested: AtomicBool,
    hook: Mutex<Option<Hook>>,
}

impl Stop {
    /// Asks the run to stop, through the hook its runtime left.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        if let Some(hook) = self
            .hook
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            hook();
        }
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// How the runtime stops a run: `hook` is called when a stop is
    /// requested, at once if it already was.
    pub fn on_request(&self, hook: impl Fn() + Send + Sync + 'static) {
        let mut slot = self.hook.lock().unwrap_or_else(PoisonError::into_inner);
        if self.requested.load(Ordering::SeqCst) {
            hook();
        }
        *slot = Some(Box::new(hook));
    }
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stop")
            .field("requested", &self.requested.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A model runtime: turns a bundle's main artifact into a [`Predictor`].
pub trait Backend: Send + Sync + 'static {
    /// Loads the bundle's model; the error names what failed and why.
    fn load(&self, bundle: &Bundle) -> Result<Arc<dyn Predictor>, BackendError>;

    /// The `platform` reported in model metadata, such as `onnxruntime_onnx`.
    fn platform(&self) -> &'static str;
}
