//! The harness's only way to the model service: the Open Inference
//! Protocol over HTTP, with inference over its gRPC service instead where
//! the run asks (`--protocol grpc`, `grpc.rs`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

mod answer;
mod grpc;
mod infer;

pub use answer::{Answer, FallbackReason, expected, params};
pub use grpc::NotAnAddress;
use infer::Sent;
pub use infer::{Prepared, SHED_RETRIES};

/// How long one request may take before the endpoint counts as hanging.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The endpoint could not be reached or did not answer in time: exit code 3.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct Unreachable {
    pub url: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Client {
    pub base: String,
    http: reqwest::Client,
    /// The bearer token of the repository API, for an endpoint this run
    /// started with one.
    repository_token: Option<String>,
    /// The models whose metadata lists no versions (KServe's Python server
    /// says `"versions": null` and answers 501 on a versioned path): they
    /// are called without one. Shared by the client's clones.
    unversioned: Arc<Mutex<BTreeSet<String>>>,
    /// Where inference goes instead of REST: the endpoint's gRPC service.
    grpc: Option<grpc::Grpc>,
    /// Whether the endpoint has REST at all: a `grpc://` target has not,
    /// and answers the protocol's core calls over gRPC instead.
    rest: bool,
}

impl Client {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            repository_token: None,
            unversioned: Arc::default(),
            grpc: None,
            rest: true,
        }
    }

    /// A client of an endpoint that speaks only the protocol's gRPC half,
    /// at `HOST:PORT`: inference over gRPC, and the core REST calls the
    /// suites make (health, readiness, metadata) through their gRPC
    /// equivalents; every other REST call is answered 404.
    pub fn grpc_only(addr: &str) -> Result<Self, NotAnAddress> {
        let mut client = Self::new(&format!("grpc://{addr}")).with_grpc(addr)?;
        client.rest = false;
        Ok(client)
    }

    /// The same client, sending inference to the gRPC service at
    /// `HOST:PORT` instead of REST; health, metadata and Preflight's
    /// extensions stay on REST.
    pub fn with_grpc(mut self, addr: &str) -> Result<Self, NotAnAddress> {
        self.grpc = Some(grpc::Grpc::new(addr)?);
        Ok(self)
    }

    /// The gRPC service's `HOST:PORT`, where inference goes over gRPC.
    pub fn grpc_addr(&self) -> Option<&str> {
        self.grpc.as_ref().map(|g| g.addr.as_str())
    }

    /// A client of the same endpoint with connections of its own, made on
    /// the runtime that is to drive them; what it knows of the endpoint's
    /// models is shared.
    pub fn fresh(&self) -> Self {
        let grpc = (self.grpc.as_ref()).and_then(|g| grpc::Grpc::new(&g.addr).ok());
        Self {
            repository_token: self.repository_token.clone(),
            unversioned: Arc::clone(&self.unversioned),
            grpc,
            rest: self.rest,
            ..Self::new(&self.base)
        }
    }

    /// Reads the model's metadata: a model whose metadata lists no versions
    /// is called without one from now on. A model the endpoint does not
    /// describe is left as it is: its requests say why.
    pub async fn learn_versions(&self, model: &str) -> Result<(), Unreachable> {
        let (status, text) = self.get_text(&format!("/v2/models/{model}")).await?;
        let metadata: Value = serde_json::from_str(&text).unwrap_or_default();
        let lists_none = match &metadata["versions"] {
            Value::Null => true,
            Value::Array(versions) => versions.is_empty(),
            _ => false,
        };
        if status == 200
            && metadata.is_object()
            && lists_none
            && let Ok(mut unversioned) = self.unversioned.lock()
        {
            unversioned.insert(model.to_owned());
        }
        Ok(())
    }

    /// The path of a model's infer route: of one version, or of the
    /// version the server serves by default, and always the latter for a
    /// model whose metadata lists no versions.
    pub fn infer_path(&self, model: &str, version: Option<u64>) -> String {
        match self.called_version(model, version) {
            Some(v) => format!("/v2/models/{model}/versions/{v}/infer"),
            None => format!("/v2/models/{model}/infer"),
        }
    }

    /// The version a request for `version` of `model` names: none for a
    /// model whose metadata lists no versions, over either protocol.
    pub(crate) fn called_version(&self, model: &str, version: Option<u64>) -> Option<u64> {
        let unversioned = self
            .unversioned
            .lock()
            .is_ok_and(|models| models.contains(model));
        version.filter(|_| !unversioned)
    }

    /// The same client, sending `token` on repository calls.
    /// Whether the client can call the repository API with a token.
    pub fn has_repository_token(&self) -> bool {
        self.repository_token.is_some()
    }

    pub fn with_repository_token(mut self, token: &str) -> Self {
        self.repository_token = Some(token.to_owned());
        self
    }

    /// `GET path`: the status, or why nothing answered.
    pub async fn status(&self, path: &str) -> Result<u16, Unreachable> {
        if let Some(grpc) = self.grpc.as_ref().filter(|_| !self.rest) {
            return grpc.core(path).await.map(|(status, _)| status);
        }
        let url = format!("{}{path}", self.base);
        self.http
            .get(&url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| unreachable(&url, &e))
    }

    /// `GET path`: the status and the body as text.
    pub async fn get_text(&self, path: &str) -> Result<(u16, String), Unreachable> {
        if let Some(grpc) = self.grpc.as_ref().filter(|_| !self.rest) {
            return grpc.core(path).await;
        }
        let url = format!("{}{path}", self.base);
        text(self.http.get(&url), &url).await
    }

    /// `POST path` with no body, for the repository API (with its token,
    /// where the client has one): the status and the body as text.
    pub async fn post_empty(&self, path: &str) -> Result<(u16, String), Unreachable> {
        if !self.rest {
            return Ok(grpc::not_over_grpc(path));
        }
        let url = format!("{}{path}", self.base);
        let mut request = self.http.post(&url);
        if let Some(token) = &self.repository_token {
            request = request.bearer_auth(token);
        }
        text(request, &url).await
    }

    /// `POST path` with a JSON body to the repository API, with the client's
    /// token where it has one: the status and the body as text.
    pub async fn post_repository(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(u16, String), Unreachable> {
        if !self.rest {
            return Ok(grpc::not_over_grpc(path));
        }
        let url = format!("{}{path}", self.base);
        let mut request = self.http.post(&url).json(body);
        if let Some(token) = &self.repository_token {
            request = request.bearer_auth(token);
        }
        text(request, &url).await
    }

    /// `POST path` with a JSON body: the status and the body as text.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<(u16, String), Unreachable> {
        if !self.rest {
            return Ok(grpc::not_over_grpc(path));
        }
        let url = format!("{}{path}", self.base);
        text(self.http.post(&url).json(body), &url).await
    }
}

/// Sends `request` to `url`: the status and the body as text.
async fn text(request: reqwest::RequestBuilder, url: &str) -> Result<(u16, String), Unreachable> {
    let response = request.send().await.map_err(|e| unreachable(url, &e))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| unreachable(url, &e))?;
    Ok((status, body))
}

fn unreachable(url: &str, error: &reqwest::Error) -> Unreachable {
    let reason = if error.is_timeout() {
        format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
    } else if error.is_connect() {
        "connection refused or failed".to_owned()
    } else {
        // reqwest's own message ("error sending request for url") hides the
        // cause, which is in its sources: "connection reset by peer".
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        reason
    };
    Unreachable {
        url: url.to_owned(),
        reason,
    }
}
