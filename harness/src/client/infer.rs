//! Inference: a request made ready to send by the client's protocol,
//! sent, retried where the connection failed or the server shed it, and
//! its answer read.

use std::time::Duration;

use preflight_bundle::Manifest;
use serde_json::Value;

use super::answer::read_answer;
use super::{Answer, Client, Unreachable, grpc, unreachable};

/// An infer request made ready to send, as many times as needed.
#[derive(Debug, Clone)]
pub enum Prepared {
    Rest {
        url: reqwest::Url,
        body: bytes::Bytes,
    },
    Grpc(Box<preflight_grpc::ModelInferRequest>),
    /// A request the client's protocol cannot carry (a string in an FP32
    /// input cannot travel over gRPC), and why.
    Unsendable(String),
}

impl Client {
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

    /// The command that sends `row` (manifest input order) to the
    /// manifest's model and version as the harness does, to reproduce a row
    /// the reports single out: `curl`, or `grpcurl` over gRPC.
    pub fn curl(&self, manifest: &Manifest, row: &[preflight_bundle::Value]) -> String {
        self.command_for(manifest, &manifest.infer_request(&[row]))
    }

    /// The command that sends the request `body` to the manifest's model
    /// and version as the harness does: `curl`, or `grpcurl` over gRPC.
    pub fn command_for(&self, manifest: &Manifest, body: &Value) -> String {
        let (model, version) = (&manifest.model.name, manifest.model.version);
        if let Some(grpc) = &self.grpc {
            return grpc::grpcurl(&grpc.addr, body, model, version);
        }
        format!(
            "curl -sS {}{} \\\n  -H 'content-type: application/json' -d '{}'",
            self.base,
            self.infer_path(model, Some(version)),
            body.to_string().replace('\'', "'\\''")
        )
    }

    /// Sends a request body to the manifest's model and version.
    pub async fn post_infer(
        &self,
        manifest: &Manifest,
        body: &Value,
        rows: usize,
    ) -> Result<Answer, Unreachable> {
        let prepared = self.prepare(&manifest.model.name, Some(manifest.model.version), body)?;
        self.send(&prepared, manifest, rows).await
    }

    /// A request body to a model's version, or to the version it serves by
    /// default, made ready to send by the client's protocol.
    pub fn prepare(
        &self,
        model: &str,
        version: Option<u64>,
        body: &Value,
    ) -> Result<Prepared, Unreachable> {
        if self.grpc.is_some() {
            let version = self.called_version(model, version);
            let version = version.map_or_else(String::new, |v| v.to_string());
            let request = preflight_grpc::request_from_json(body, model, &version, false);
            return Ok(match request {
                Ok(request) => Prepared::Grpc(Box::new(request)),
                Err(why) => Prepared::Unsendable(format!("a gRPC client cannot send it: {why}")),
            });
        }
        let url = format!("{}{}", self.base, self.infer_path(model, version));
        let url = reqwest::Url::parse(&url).map_err(|e| Unreachable {
            reason: format!("not a URL: {e}"),
            url,
        })?;
        let body = bytes::Bytes::from(body.to_string());
        Ok(Prepared::Rest { url, body })
    }

    /// Sends a prepared request; the answer is read against `manifest`'s
    /// outputs. A request the protocol cannot carry is answered by nobody:
    /// its answer's status is 0, with why.
    pub async fn send(
        &self,
        prepared: &Prepared,
        manifest: &Manifest,
        rows: usize,
    ) -> Result<Answer, Unreachable> {
        let (status, text) = self.send_text(prepared).await?;
        Ok(read_answer(manifest, status, &text, rows))
    }

    /// Sends a prepared request: the status and the body as text (over
    /// gRPC, the JSON REST would have answered).
    ///
    /// A request that fails below HTTP (a pooled connection that the other
    /// side, or a proxy such as Docker's, closed or reset meanwhile) is sent
    /// once more: inference has no side effect, and a server that is really
    /// gone fails the second time too. A timeout is not retried. A request
    /// the server sheds (503 with `Retry-After`) is sent again after the
    /// time it asks for, at most [`SHED_RETRIES`] times, as a well-behaved
    /// client does.
    pub async fn send_text(&self, prepared: &Prepared) -> Result<(u16, String), Unreachable> {
        let mut shed = 0;
        loop {
            let sent = self.exchange(prepared).await?;
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
                _ => return Ok((sent.status, sent.text)),
            }
        }
    }

    /// One exchange, retried once where the connection failed.
    async fn exchange(&self, prepared: &Prepared) -> Result<Sent, Unreachable> {
        match (prepared, &self.grpc) {
            (Prepared::Rest { url, body }, _) => {
                let sent = match self.post(url, body.clone()).await {
                    Err(e) if !e.is_timeout() => self.post(url, body.clone()).await,
                    first => first,
                };
                sent.map_err(|e| unreachable(url.as_str(), &e))
            }
            (Prepared::Grpc(request), Some(grpc)) => match grpc.call(request).await {
                Err(first) if !first.reason.starts_with("no answer") => grpc.call(request).await,
                answered => answered,
            },
            (Prepared::Grpc(_), None) => Err(Unreachable {
                url: self.base.clone(),
                reason: "a gRPC request to a client without a gRPC service".to_owned(),
            }),
            (Prepared::Unsendable(why), _) => Ok(Sent {
                status: UNSENT,
                text: serde_json::json!({ "error": why }).to_string(),
                retry_after: None,
            }),
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

/// The status of an answer to a request that was never sent: its
/// protocol cannot carry it.
const UNSENT: u16 = 0;

/// How often a shed request is sent again, and the longest wait between
/// two: about 1, 2, 4 and 4 s from a server that asks for 1 s. Two retries
/// 1 s apart were not enough for a 2,000-row batch to a one-CPU container
/// while three other models' suites kept its one run slot busy: a server's
/// admission control working as it should, which the gate must not fail.
pub const SHED_RETRIES: u32 = 4;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(4);

/// An answer as it came: status, body, and the `Retry-After` of a shed one.
pub(crate) struct Sent {
    pub(crate) status: u16,
    pub(crate) text: String,
    pub(crate) retry_after: Option<Duration>,
}
