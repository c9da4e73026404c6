//! Integration tests of preflight-serve, over real HTTP on 127.0.0.1:0 with
//! ONNX Runtime and the committed fixtures.

mod admission;
mod api;
mod bad_input;
mod deploy;
mod fallback;
mod fuzz_corpus;
mod gather;
mod grpc;
mod monitor;
mod parity;
mod process;
mod repository;
mod rollout;

use std::path::{Path, PathBuf};

use preflight_serving::{BodyLimits, LocalServer, OrtOptions, ServeConfig};
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// A server on a free loopback port, serving `models` until dropped.
#[derive(Debug)]
pub struct Server {
    pub url: String,
    /// The gRPC service's `http://127.0.0.1:PORT`.
    pub grpc: String,
    pub client: reqwest::Client,
    _local: LocalServer,
}

pub fn config(models: &Path) -> ServeConfig {
    ServeConfig {
        body: BodyLimits {
            max_bytes: 4 * 1024 * 1024,
            ..BodyLimits::default()
        },
        max_rows: 20_000,
        ..ServeConfig::new(models)
    }
}

impl Server {
    pub async fn start(models: &Path) -> Server {
        Self::with_config(config(models)).await
    }

    pub async fn with_config(config: ServeConfig) -> Server {
        let local = LocalServer::start(config, OrtOptions::default()).await;
        let local = local.unwrap_or_else(|e| panic!("{e}"));
        Server {
            url: local.url.clone(),
            grpc: local.grpc.clone(),
            client: reqwest::Client::new(),
            _local: local,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET");
        decode(response).await
    }

    /// The value of one series of `/metrics`, named with its labels, such
    /// as `preflight_rows_total{model="m",version="1"}`.
    pub async fn metric(&self, series: &str) -> u64 {
        let text = self.text("/metrics").await;
        let line = text.lines().find(|l| l.starts_with(&format!("{series} ")));
        let line = line.unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a count")
    }

    /// The body of `GET path` as text, for `/metrics`.
    pub async fn text(&self, path: &str) -> String {
        let response = self.client.get(format!("{}{path}", self.url)).send().await;
        response.expect("GET").text().await.expect("text")
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .expect("POST");
        decode(response).await
    }

    /// Sends `request`, written by hand (`{addr}` stands for the server's
    /// `HOST:PORT`), over a plain socket, and returns the answer's head and
    /// body as text: for requests no HTTP client would send.
    pub async fn by_hand(&self, request: &str) -> String {
        let addr = self.url.trim_start_matches("http://").to_owned();
        let request = request.replace("{addr}", &addr);
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
            let timeout = Some(std::time::Duration::from_secs(10));
            stream.set_read_timeout(timeout).expect("timeout");
            stream.write_all(request.as_bytes()).expect("write");
            let mut answer = Vec::new();
            let mut chunk = [0; 4096];
            // Until the body the head announces is in, or the server closes.
            while !complete(&answer) {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&chunk[..n]),
                }
            }
            String::from_utf8_lossy(&answer).into_owned()
        })
        .await
        .expect("join")
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        decode(response).await
    }
}

/// Whether `answer` holds a whole HTTP response: its head and as many body
/// bytes as its `content-length` says.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|n| body.len() >= n)
}

async fn decode(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The values of output `name` of an infer response.
pub fn output(response: &Value, name: &str) -> Vec<f64> {
    let outputs = response["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs in {response}"));
    let out = outputs
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output '{name}' in {response}"));
    out["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect()
}

/// A copy of one fixture bundle as `<tmp>/<model>/<version>`, renamed to `model`.
pub fn copy_bundle(from: &Path, tmp: &Path, model: &str, version: u64) -> PathBuf {
    let dir = tmp.join(model).join(version.to_string());
    std::fs::create_dir_all(&dir).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read bundle") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == "manifest.toml" {
            let text = std::fs::read_to_string(entry.path()).expect("manifest");
            let text = text
                .lines()
                .map(|l| {
                    // The first `name` and `version` lines are [model]'s.
                    if l.starts_with("name = \"eta-") {
                        format!("name = \"{model}\"")
                    } else if l.starts_with("version = ") {
                        format!("version = {version}")
                    } else {
                        l.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(dir.join(name), text).expect("write manifest");
        } else if std::fs::hard_link(entry.path(), dir.join(&name)).is_err() {
            std::fs::copy(entry.path(), dir.join(name)).expect("copy");
        }
    }
    dir
}
