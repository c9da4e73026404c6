//! Inference over the protocol's gRPC service: the JSON request the suites
//! build, sent as the message that means the same, and the answer read back
//! as the JSON REST would have written (`preflight_grpc`), so that every
//! suite reads both protocols alike. A gRPC code is read as the HTTP status
//! REST gives the same mistake (docs/harness.md, "Over gRPC").

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use preflight_grpc::grpc_inference_service_client::GrpcInferenceServiceClient;
use preflight_grpc::model_metadata_response::TensorMetadata;
use preflight_grpc::{
    ModelInferRequest, ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest,
    ServerLiveRequest, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use super::{REQUEST_TIMEOUT, Sent, Unreachable};

/// The gRPC service of an endpoint, over one HTTP/2 connection that its
/// calls share, made when first used.
#[derive(Debug, Clone)]
pub(super) struct Grpc {
    /// `HOST:PORT`.
    pub(super) addr: String,
    client: GrpcInferenceServiceClient<Channel>,
}

/// `--grpc-addr` names no gRPC service a client can be made for.
#[derive(Debug, thiserror::Error)]
#[error("{addr}: not an address of a gRPC service: {source}")]
pub struct NotAnAddress {
    addr: String,
    source: tonic::transport::Error,
}

impl Grpc {
    pub(super) fn new(addr: &str) -> Result<Self, NotAnAddress> {
        let endpoint = Endpoint::new(format!("http://{addr}"))
            .map_err(|source| NotAnAddress {
                addr: addr.to_owned(),
                source,
            })?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let client = GrpcInferenceServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(usize::MAX);
        Ok(Self {
            addr: addr.to_owned(),
            client,
        })
    }

    /// One call: the answer as REST's status and JSON body, or why nothing
    /// answered. A call that failed below gRPC (the connection) is
    /// `Unreachable`; a status the server sent is an answer.
    pub(super) async fn call(&self, request: &ModelInferRequest) -> Result<Sent, Unreachable> {
        let url = format!("grpc://{}", self.addr);
        let mut client = self.client.clone();
        let called = tokio::time::timeout(REQUEST_TIMEOUT, client.model_infer(request.clone()));
        let Ok(answered) = called.await else {
            let reason = format!("no answer within {} s", REQUEST_TIMEOUT.as_secs());
            return Err(Unreachable { url, reason });
        };
        let status = match answered {
            Ok(response) => {
                // An answer that cannot be read says why, as a 200 whose
                // body has no outputs.
                let json = preflight_grpc::response_to_json(response.get_ref());
                let text = json.map_or_else(
                    |why| serde_json::json!({ "error": why.to_string() }).to_string(),
                    |json| json.to_string(),
                );
                return Ok(Sent {
                    status: 200,
                    text,
                    retry_after: None,
                });
            }
            Err(status) => status,
        };
        if std::error::Error::source(&status).is_some() {
            // The connection, not the server: it never answered.
            let reason = format!("{} ({})", status.message(), code_name(status.code()));
            return Err(Unreachable { url, reason });
        }
        let retry_after = (status.metadata().get("grpc-retry-pushback-ms"))
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .map(Duration::from_millis);
        // The server's message first, as over REST, then the code it came with.
        let error = format!("{} (gRPC {})", status.message(), code_name(status.code()));
        Ok(Sent {
            status: http_status(status.code()),
            text: serde_json::json!({ "error": error }).to_string(),
            retry_after,
        })
    }
}

impl Grpc {
    /// A core REST call of the protocol, `GET path`, made through its gRPC
    /// equivalent, for an endpoint without REST: health, readiness and
    /// metadata, answered as REST's status and JSON body. The extensions
    /// a gRPC client cannot reach (the monitor, the repository, routes) are
    /// left out of the server's list, so that their suites skip.
    pub(super) async fn core(&self, path: &str) -> Result<(u16, String), Unreachable> {
        let url = format!("grpc://{}", self.addr);
        let called = tokio::time::timeout(REQUEST_TIMEOUT, self.core_call(path)).await;
        let Ok(answered) = called else {
            let reason = format!("no answer within {} s", REQUEST_TIMEOUT.as_secs());
            return Err(Unreachable { url, reason });
        };
        match answered {
            None => Ok(not_over_grpc(path)),
            Some(Ok(answer)) => Ok(answer),
            Some(Err(status)) if std::error::Error::source(&status).is_some() => {
                let reason = format!("{} ({})", status.message(), code_name(status.code()));
                Err(Unreachable { url, reason })
            }
            Some(Err(status)) => {
                let error = format!("{} (gRPC {})", status.message(), code_name(status.code()));
                let body = serde_json::json!({ "error": error }).to_string();
                Ok((http_status(status.code()), body))
            }
        }
    }

    /// The gRPC call that stands for `GET path`, made; `None` where none does.
    async fn core_call(&self, path: &str) -> Option<Result<(u16, String), tonic::Status>> {
        let mut client = self.client.clone();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        Some(match parts.as_slice() {
            ["v2", "health", "live"] => client
                .server_live(ServerLiveRequest {})
                .await
                .map(|r| ready_json(r.get_ref().live)),
            ["v2", "health", "ready"] => client
                .server_ready(ServerReadyRequest {})
                .await
                .map(|r| ready_json(r.get_ref().ready)),
            ["v2"] => client
                .server_metadata(ServerMetadataRequest {})
                .await
                .map(|r| server_json(r.get_ref())),
            ["v2", "models", model, rest @ ..] => {
                let (version, ready) = match rest {
                    [] => ("", false),
                    ["ready"] => ("", true),
                    ["versions", v] => (*v, false),
                    ["versions", v, "ready"] => (*v, true),
                    _ => return None,
                };
                let (name, version) = ((*model).to_owned(), version.to_owned());
                if ready {
                    let request = ModelReadyRequest { name, version };
                    let answer = client.model_ready(request).await;
                    answer.map(|r| ready_json(r.get_ref().ready))
                } else {
                    let request = ModelMetadataRequest { name, version };
                    let answer = client.model_metadata(request).await;
                    answer.map(|r| model_json(r.get_ref()))
                }
            }
            _ => return None,
        })
    }
}

/// A REST call an endpoint without REST cannot answer.
pub(super) fn not_over_grpc(path: &str) -> (u16, String) {
    let error = format!("{path} is not served over gRPC, and the endpoint has no REST");
    (404, serde_json::json!({ "error": error }).to_string())
}

/// Readiness as REST says it: 200, or 503.
fn ready_json(ready: bool) -> (u16, String) {
    match ready {
        true => (200, serde_json::json!({ "ready": true }).to_string()),
        false => (503, serde_json::json!({ "error": "not ready" }).to_string()),
    }
}

/// The extensions a client of the gRPC half reaches: answers' parameters
/// (the fallback) and nulls as NaN; the others are REST routes.
const OVER_GRPC: [&str; 2] = ["preflight_fallback", "preflight_nulls"];

fn server_json(metadata: &ServerMetadataResponse) -> (u16, String) {
    let extensions: Vec<&String> = (metadata.extensions.iter())
        .filter(|e| OVER_GRPC.contains(&e.as_str()))
        .collect();
    let (name, version) = (&metadata.name, &metadata.version);
    let body = serde_json::json!({ "name": name, "version": version, "extensions": extensions });
    (200, body.to_string())
}

fn model_json(metadata: &ModelMetadataResponse) -> (u16, String) {
    let tensors = |list: &[TensorMetadata]| -> Vec<serde_json::Value> {
        let each = list.iter().map(
            |t| serde_json::json!({ "name": t.name, "datatype": t.datatype, "shape": t.shape }),
        );
        each.collect()
    };
    let body = serde_json::json!({
        "name": metadata.name,
        "versions": metadata.versions,
        "platform": metadata.platform,
        "inputs": tensors(&metadata.inputs),
        "outputs": tensors(&metadata.outputs),
    });
    (200, body.to_string())
}

/// The `grpcurl` command that sends the REST request `body` to `model`'s
/// `version` at `addr`, run from the workspace's root: the message in
/// protobuf's JSON form, a missing value as `"NaN"`.
pub(super) fn grpcurl(addr: &str, body: &serde_json::Value, model: &str, version: u64) -> String {
    use serde_json::{Value, json};
    let inputs: Vec<Value> = (body["inputs"].as_array().into_iter().flatten())
        .map(|input| {
            let field = match input["datatype"].as_str().unwrap_or_default() {
                "FP32" => "fp32_contents",
                "FP64" => "fp64_contents",
                "INT64" => "int64_contents",
                "BOOL" => "bool_contents",
                "BYTES" => "bytes_contents",
                _ => "int_contents",
            };
            let mut values = Vec::new();
            flatten(&input["data"], &mut values);
            let values: Vec<Value> = values
                .into_iter()
                .map(|v| match v {
                    Value::Null => json!("NaN"),
                    // protobuf's JSON form writes bytes in base64.
                    Value::String(s) if field == "bytes_contents" => {
                        json!(BASE64.encode(s.as_bytes()))
                    }
                    other => other.clone(),
                })
                .collect();
            let (name, datatype, shape) = (&input["name"], &input["datatype"], &input["shape"]);
            json!({"name": name, "datatype": datatype, "shape": shape, "contents": {field: values}})
        })
        .collect();
    let message =
        json!({"model_name": model, "model_version": version.to_string(), "inputs": inputs});
    let message = message.to_string().replace('\'', "'\\''");
    format!(
        "grpcurl -plaintext -import-path grpc/proto -proto inference.proto \\\n  \
         -d '{message}' \\\n  {addr} inference.GRPCInferenceService/ModelInfer",
    )
}

fn flatten<'a>(data: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    match data {
        serde_json::Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other),
    }
}

/// A code as gRPC names it: `INVALID_ARGUMENT`, `UNAVAILABLE`.
fn code_name(code: Code) -> String {
    let camel = format!("{code:?}");
    let mut name = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// The HTTP status REST answers for what gRPC says with `code`.
pub(super) fn http_status(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::DeadlineExceeded => 408,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => 409,
        Code::OutOfRange => 413,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::Cancelled | Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}
