//! `preflight-serve`: an Open Inference Protocol (KServe v2) server for a
//! repository of ONNX models run by ONNX Runtime, with a native fast fallback.
//!
//! The HTTP layer ([`app`]) depends only on the [`Backend`] and [`Predictor`]
//! traits; [`OrtBackend`] implements them with ONNX Runtime.

mod admission;
mod backend;
mod batch;
mod error;
mod gather;
pub mod heap;
mod infer;
mod local;
mod logging;
mod metrics;
mod monitor;
mod onnx;
mod protocol;
mod registry;
mod request_data;
mod rollout;
mod routes;
mod serve;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use admission::{AdmissionLimits, QUEUE_WAIT_MS};
pub use backend::{Backend, BackendError, Predictor, Stop};
pub use batch::{Batch, Limits};
pub use error::ApiError;
pub use infer::FallbackReason;
pub use local::{LocalServer, StartError};
pub use logging::{DroppedLines, LogFormat, Logging};
pub use metrics::Metrics;
pub use metrics::connections::{Closed, Connections};
pub use monitor::{Monitor, MonitorCounters, MonitorLimits, VersionMonitor};
pub use onnx::{OrtBackend, OrtOptions, init_ort};
pub use preflight_ort::{OrtInitError, find_library};
pub use protocol::{InferRequest, InferResponse, TensorData, params};
pub use registry::{Registry, VersionPolicy};
pub use routes::{AppState, BodyLimits, app};
pub use serve::{ConnectionLimits, serve};

/// Everything that configures a server, apart from how it listens.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub models: PathBuf,
    pub version_policy: VersionPolicy,
    pub body: BodyLimits,
    pub max_rows: usize,
    /// Who may call the repository API (load, unload, index).
    pub repository: RepositoryAccess,
    pub load_threads: usize,
    /// How much work is taken on at once; see docs/serving.md, "Admission".
    pub admission: AdmissionLimits,
    /// What the monitor keeps; see docs/serving.md, "Monitoring".
    pub monitor: MonitorLimits,
}

/// Who may call the repository API, which changes what is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryAccess {
    /// Nobody: `preflight-serve` without a token, unless told otherwise.
    Off,
    /// Anybody who can reach the server: for a trusted network, and for a
    /// server inside its caller's own process.
    Open,
    /// Whoever sends `Authorization: Bearer <token>`.
    Token(String),
}

impl ServeConfig {
    /// `preflight-serve`'s defaults for the repository at `models`, but for
    /// the repository API, open: the server of this config is its caller's.
    pub fn new(models: impl Into<PathBuf>) -> Self {
        Self {
            models: models.into(),
            version_policy: VersionPolicy::All,
            body: BodyLimits::default(),
            max_rows: 100_000,
            repository: RepositoryAccess::Open,
            load_threads: 2,
            admission: AdmissionLimits::for_this_machine(),
            monitor: MonitorLimits::default(),
        }
    }
}

impl AppState {
    /// A state for `config`, its repository not yet loaded and not ready:
    /// call [`AppState::load`].
    pub fn new(config: &ServeConfig, backend: Arc<dyn Backend>) -> Self {
        let registry = Registry::new(
            &config.models,
            backend,
            config.version_policy,
            config.load_threads,
            config.monitor.window,
        );
        Self {
            registry: Arc::new(registry),
            metrics: Metrics::default(),
            admission: admission::Admission::new(config.admission),
            monitor: Monitor::start(config.monitor),
            shadows: rollout::Shadows::default(),
            limits: Limits {
                max_rows: config.max_rows,
            },
            body: config.body,
            repository: config.repository.clone(),
            log: None,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }

    /// From now on readiness answers 503: the server is stopping.
    pub fn begin_drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The drain is over: a request whose body is still arriving is answered
    /// 503 at once, instead of holding the shutdown for its slowest client.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Loads every model of the repository, then answers ready. A model
    /// that cannot be loaded is marked so and does not stop the others; the
    /// error is for a repository that cannot be read at all. Blocking.
    pub fn load(&self) -> Result<(), preflight_bundle::Error> {
        self.registry.load_all()?;
        self.ready.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}
