//! The harness's only way to the model service: HTTP, Open Inference Protocol.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use preflight_bundle::{Manifest, Record};
use serde_json::Value;

/// How long one request may take before the endpoint counts as hanging.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Names of the `parameters` of the wire protocol that the harness reads
/// and writes (`../shared/PROTOCOL.md`, docs/serving.md).
pub mod params {
    /// Request: the main model's budget in milliseconds.
    pub const DEADLINE_MS: &str = "deadline_ms";
    /// Response: `true` when the fallback answered.
    pub const FALLBACK: &str = "fallback";
    /// Response: why the fallback answered.
    pub const FALLBACK_REASON: &str = "fallback_reason";
}

/// Why the endpoint says its fallback answered (`parameters.fallback_reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackReason {
    /// The main model returned an error.
    Error,
    /// The main model did not answer within the deadline.
    Deadline,
    /// The main model could not be loaded.
    NotLoaded,
    /// A reason this harness does not know, as the endpoint wrote it (any
    /// Open Inference Protocol server may add its own), or `unknown`.
    Other(String),
}

impl FallbackReason {
    pub fn parse(reason: &str) -> Self {
        match reason {
            "error" => FallbackReason::Error,
            "deadline" => FallbackReason::Deadline,
            "not_loaded" => FallbackReason::NotLoaded,
            other => FallbackReason::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            FallbackReason::Error => "error",
            FallbackReason::Deadline => "deadline",
            FallbackReason::NotLoaded => "not_loaded",
            FallbackReason::Other(reason) => reason,
        }
    }
}

impl std::fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The endpoint could not be reached or did not answer in time: exit code 3.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct Unreachable {
    pub url: String,
    pub reason: String,
}

/// What the endpoint answered to one infer request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// One column per slot of the manifest's outputs (`crate::slots`: a
    /// classifier's label and each class's probability), where the answer is a 200.
    pub outputs: Vec<Vec<f64>>,
    /// `parameters.fallback_reason` where the fallback answered.
    pub fallback: Option<FallbackReason>,
    /// The error message of a non-200 answer, or why a 200 could not be read.
    pub error: Option<String>,
    /// The answer's `model_version`, where it gives one.
    pub model_version: Option<String>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status == 200 && self.error.is_none()
    }

    /// `500: internal error` or `200 but ...`: for messages.
    pub fn describe(&self) -> String {
        match &self.error {
            Some(e) => format!("{} {e}", self.status),
            None => self.status.to_string(),
        }
    }
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
        }
    }

    /// A client of the same endpoint with connections of its own, made on
    /// the runtime that is to drive them; what it knows of the endpoint's
    /// models is shared.
    pub fn fresh(&self) -> Self {
        Self {
            repository_token: self.repository_token.clone(),
            unversioned: Arc::clone(&self.unversioned),
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
        let unversioned = self
            .unversioned
            .lock()
            .is_ok_and(|models| models.contains(model));
        match version.filter(|_| !unversioned) {
            Some(v) => format!("/v2/models/{model}/versions/{v}/infer"),
            None => format!("/v2/models/{model}/infer"),
        }
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
        let url = format!("{}{path}", self.base);
        text(self.http.get(&url), &url).await
    }

    /// `POST path` with no body, for the repository API (with its token,
    /// where the client has one): the status and the body as text.
    pub async fn post_empty(&self, path: &str) -> Result<(u16, String), Unreachable> {
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
        let url = format!("{}{path}", self.base);
        let mut request = self.http.post(&url).json(body);
        if let Some(token) = &self.repository_token {
            request = request.bearer_auth(token);
        }
        text(request, &url).await
    }

    /// `POST path` with a JSON body: the status and the body as text.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<(u16, String), Unreachable> {
        let url = format!("{}{path}", self.base);
        text(self.http.post(&url).json(body), &url).await
    }

    /// Infers `rows` (manifest input order) as one columnar request.
    pub async fn infer(
        &self,
        manifest: &Manifest,
        rows: &[&[preflight_bundle::Value]],
        parameters: Option<Value>,
    ) -> Result<Answer, Unreachable> {
        let mut body = manifest.infer_request(rows);
        if let Some(parameters) = parameters {
            body["parameters"] = parameters;
        }
        self.post_infer(manifest, &body, rows.len()).await
    }

    /// The `curl` command that sends `row` (manifest input order) to the
    /// manifest's model and version as the harness does: to reproduce a
    /// row the reports single out.
    pub fn curl(&self, manifest: &Manifest, row: &[preflight_bundle::Value]) -> String {
        let body = manifest.infer_request(&[row]).to_string();
        format!(
            "curl -sS {}{} \\\n  -H 'content-type: application/json' -d '{}'",
            self.base,
            self.infer_path(&manifest.model.name, Some(manifest.model.version)),
            body.replace('\'', "'\\''")
        )
    }

    /// Sends a prepared request body to the manifest's model and version.
    pub async fn post_infer(
        &self,
        manifest: &Manifest,
        body: &Value,
        rows: usize,
    ) -> Result<Answer, Unreachable> {
        let url = self.infer_url(&manifest.model.name, Some(manifest.model.version))?;
        let body = bytes::Bytes::from(body.to_string());
        self.post_body(&url, manifest, body, rows).await
    }

    /// The infer URL of a model: of one version, or of the version the
    /// server serves by default. Parsed once, for callers that send many.
    pub fn infer_url(
        &self,
        model: &str,
        version: Option<u64>,
    ) -> Result<reqwest::Url, Unreachable> {
        let url = format!("{}{}", self.base, self.infer_path(model, version));
        reqwest::Url::parse(&url).map_err(|e| Unreachable {
            reason: format!("not a URL: {e}"),
            url,
        })
    }

    /// Sends a serialized request body to an infer URL; the answer is read
    /// against `manifest`'s outputs.
    ///
    /// A request that fails below HTTP (a pooled connection that the other
    /// side, or a proxy such as Docker's, closed or reset meanwhile) is sent
    /// once more: inference has no side effect, and a server that is really
    /// gone fails the second time too. A timeout is not retried. A request
    /// the server sheds (503 with `Retry-After`) is sent again after the
    /// time it asks for, at most [`SHED_RETRIES`] times, as a well-behaved
    /// client does.
    pub async fn post_body(
        &self,
        url: &reqwest::Url,
        manifest: &Manifest,
        body: bytes::Bytes,
        rows: usize,
    ) -> Result<Answer, Unreachable> {
        let mut shed = 0;
        loop {
            let sent = match self.post(url, body.clone()).await {
                Err(e) if !e.is_timeout() => self.post(url, body.clone()).await,
                first => first,
            };
            let sent = sent.map_err(|e| unreachable(url.as_str(), &e))?;
            match sent.retry_after {
                Some(wait) if sent.status == 503 && shed < SHED_RETRIES => {
                    // Twice as long each time, from what the server asks, and
                    // up to half a second more, so that requests shed together
                    // do not all come back together.
                    let jitter = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_micros() % 500_000);
                    let backoff = wait * (1 << shed) + Duration::from_micros(u64::from(jitter));
                    tokio::time::sleep(backoff.min(MAX_RETRY_AFTER)).await;
                    shed += 1;
                }
                _ => return Ok(read_answer(manifest, sent.status, &sent.text, rows)),
            }
        }
    }

    async fn post(&self, url: &reqwest::Url, body: bytes::Bytes) -> reqwest::Result<Sent> {
        let response = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await?;
        Ok(Sent {
            status,
            text,
            retry_after,
        })
    }
}

/// How often a shed request is sent again, and the longest wait between
/// two: about 1, 2, 4 and 4 s from a server that asks for 1 s. Two retries
/// 1 s apart were not enough for a 2,000-row batch to a one-CPU container
/// while three other models' suites kept its one run slot busy: a server's
/// admission control working as it should, which the gate must not fail.
pub const SHED_RETRIES: u32 = 4;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(4);

/// An answer as it came: status, body, and the `Retry-After` of a shed one.
struct Sent {
    status: u16,
    text: String,
    retry_after: Option<Duration>,
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

/// Reads an answer into slot columns (`crate::slots`).
fn read_answer(manifest: &Manifest, status: u16, text: &str, rows: usize) -> Answer {
    let fail = |error: String| Answer {
        status,
        outputs: Vec::new(),
        fallback: None,
        error: Some(error),
        model_version: None,
    };
    let body: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            return fail(format!(
                "body is not JSON: {}",
                text.chars().take(200).collect::<String>()
            ));
        }
    };
    if status != 200 {
        return fail(
            body["error"]
                .as_str()
                .map_or_else(|| body.to_string(), str::to_owned),
        );
    }
    let Some(outputs) = body["outputs"].as_array() else {
        return fail("the answer has no outputs".to_owned());
    };
    let columns = match crate::slots::columns(manifest, outputs, rows) {
        Ok(columns) => columns,
        Err(why) => return fail(why),
    };
    let parameters = &body["parameters"];
    let fallback = (parameters[params::FALLBACK] == true).then(|| {
        FallbackReason::parse(
            parameters[params::FALLBACK_REASON]
                .as_str()
                .unwrap_or("unknown"),
        )
    });
    let model_version = match &body["model_version"] {
        Value::String(v) => Some(v.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Answer {
        status,
        outputs: columns,
        fallback,
        error: None,
        model_version,
    }
}

/// The expected value of slot `slot` (`crate::slots`) of a record's
/// outputs: a regression output's value, a classifier's label as its
/// class's position, or one of its probabilities.
pub fn expected(manifest: &Manifest, record: &Record, slot: usize) -> f64 {
    record
        .outputs
        .as_ref()
        .map(|o| crate::slots::values(manifest, o))
        .and_then(|v| v.get(slot).copied())
        .unwrap_or(f64::NAN)
}
