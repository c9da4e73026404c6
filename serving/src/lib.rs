//! `preflight-serve`: an Open Inference Protocol (KServe v2) server for a
//! repository of ONNX models run by ONNX Runtime, with a native fast fallback.
//!
//! The HTTP layer ([`app`]) depends only on the [`Backend`] and [`Predictor`]
//! traits; [`OrtBackend`] implements them with ONNX Runtime.

//!
//! Its modules stand in layers, and no file imports one that imports it
//! back (ARCHITECTURE.md, "Invariants"): `model` is the base every other
//! shares; the wire (`protocol`, `request_data`), decoding, admission,
//! metrics and the monitor stand on it; a served version (`served`) on
//! those; the inference path (`placement`, `gather`, `infer`), rollout and
//! the registry on that; `state` and the routes on top. This file only
//! declares and re-exports.

mod admission;
mod config;
mod decode;
mod describe;
mod error;
mod gather;
pub mod grpc;
pub mod heap;
mod infer;
mod local;
mod logging;
mod metrics;
mod model;
mod monitor;
mod onnx;
mod placement;
mod protocol;
mod registry;
mod request;
mod request_data;
mod rollout;
mod routes;
mod serve;
mod served;
mod state;
mod v2;

pub use admission::{AdmissionLimits, QUEUE_WAIT_MS};
pub use config::{BodyLimits, RepositoryAccess, ServeConfig};
pub use decode::Limits;
pub use error::ApiError;
pub use local::{LocalServer, StartError};
pub use logging::{DroppedLines, LogFormat, Logging};
pub use metrics::connections::{Closed, Connections};
pub use metrics::counters::Metrics;
pub use model::{
    Backend, BackendError, Batch, FallbackReason, ModelState, Outcome, Predictor, Stop, TensorData,
};
pub use monitor::{Monitor, MonitorCounters, MonitorLimits, VersionMonitor};
pub use onnx::{OrtBackend, OrtOptions, init_ort};
pub use preflight_ort::{OrtInitError, find_library};
pub use protocol::{InferRequest, InferResponse, params};
pub use registry::{Registry, VersionPolicy};
pub use routes::app;
pub use serve::{ConnectionLimits, serve};
pub use state::AppState;
