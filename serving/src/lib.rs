//! `preflight-serve`: an Open Inference Protocol (KServe v2) server for a
//! repository of ONNX models run by ONNX Runtime, with a native fast fallback.
//!
//! The HTTP layer ([`app`]) depends only on the [`Backend`] and [`Predictor`]
//! traits; [`OrtBackend`] implements them with ONNX Runtime.

mod backend;
mod batch;
mod error;
mod infer;
mod metrics;
mod onnx;
mod protocol;
mod registry;
mod routes;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use backend::{Backend, BackendError, Predictor};
pub use batch::{Batch, Limits};
pub use error::ApiError;
pub use infer::FallbackReason;
pub use metrics::Metrics;
pub use onnx::{OrtBackend, OrtOptions, init_ort};
pub use preflight_ort::{OrtInitError, find_library};
pub use protocol::{InferRequest, InferResponse, TensorData, params};
pub use registry::{Registry, VersionPolicy};
pub use routes::{AppState, app};

/// Everything that configures a server, apart from how it listens.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub models: PathBuf,
    pub version_policy: VersionPolicy,
    pub max_body_bytes: usize,
    pub max_rows: usize,
    pub repository_token: Option<String>,
    pub load_threads: usize,
}

impl AppState {
    /// A state over `registry`, not yet ready: call [`AppState::mark_ready`]
    /// once the repository is loaded.
    pub fn new(registry: Arc<Registry>, config: &ServeConfig) -> Self {
        Self {
            registry,
            metrics: Metrics::default(),
            limits: Limits {
                max_rows: config.max_rows,
            },
            max_body_bytes: config.max_body_bytes,
            repository_token: config.repository_token.clone(),
            ready: AtomicBool::new(false),
        }
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }
}
