//! The Open Inference Protocol (KServe v2) REST messages.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::model::{ModelState, TensorData};
use crate::request_data::RequestData;

/// Names of the request and response `parameters` Preflight reads and writes.
pub mod params {
    /// Request: the main model's budget in milliseconds, below the manifest's.
    pub const DEADLINE_MS: &str = "deadline_ms";
    /// Response: `true` when the fallback answered.
    pub const FALLBACK: &str = "fallback";
    /// Response: why the fallback answered (`error`, `deadline`, `not_loaded`).
    pub const FALLBACK_REASON: &str = "fallback_reason";
}

/// `POST .../infer` request body.
#[derive(Debug, Deserialize)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Option<Map<String, Json>>,
    pub inputs: Vec<RequestInput>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestOutput>>,
}

#[derive(Debug, Deserialize)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Option<Map<String, Json>>,
    /// Row-major, flat or one list per row.
    pub data: RequestData,
}

#[derive(Debug, Deserialize)]
pub struct RequestOutput {
    pub name: String,
}

/// `POST .../infer` response body.
#[derive(Debug, Serialize)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Json>>,
    pub outputs: Vec<ResponseOutput>,
}

#[derive(Debug, Serialize)]
pub struct ResponseOutput {
    pub name: String,
    pub shape: Vec<usize>,
    pub datatype: &'static str,
    pub data: TensorData,
}

/// `GET /v2/models/{m}` response body.
#[derive(Debug, Serialize)]
pub(crate) struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
    /// Preflight extension: `ready`, or `degraded` when only the fallback answers.
    pub state: ModelState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded_reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TensorMetadata {
    pub name: String,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

/// `GET /v2` response body.
#[derive(Debug, Serialize)]
pub(crate) struct ServerMetadata {
    pub name: &'static str,
    pub version: &'static str,
    pub extensions: Vec<&'static str>,
}
