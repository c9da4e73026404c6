//! Integration tests of preflight-serve, over real HTTP on 127.0.0.1:0 with
//! ONNX Runtime and the committed fixtures.

mod api;
mod bad_input;
mod fallback;
mod parity;
mod process;
mod repository;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use preflight_serving::{
    AppState, OrtBackend, OrtOptions, Registry, ServeConfig, VersionPolicy, app, find_library,
    init_ort,
};
use serde_json::{Value, json};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// A server on a free loopback port, serving `models` until dropped.
#[derive(Debug)]
pub struct Server {
    pub url: String,
    pub client: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn config(models: &Path) -> ServeConfig {
    ServeConfig {
        models: models.to_path_buf(),
        version_policy: VersionPolicy::All,
        max_body_bytes: 4 * 1024 * 1024,
        max_rows: 20_000,
        repository_token: None,
        load_threads: 2,
    }
}

impl Server {
    pub async fn start(models: &Path) -> Server {
        Self::with_config(config(models)).await
    }

    pub async fn with_config(config: ServeConfig) -> Server {
        let library = find_library(None).unwrap_or_else(|e| panic!("{e}"));
        init_ort(&library).unwrap_or_else(|e| panic!("{e}"));
        let backend = Arc::new(OrtBackend::new(OrtOptions::default()));
        let registry = Arc::new(Registry::new(
            &config.models,
            backend,
            config.version_policy,
            config.load_threads,
        ));
        let loader = Arc::clone(&registry);
        tokio::task::spawn_blocking(move || loader.load_all())
            .await
            .expect("join")
            .expect("repository readable");
        let state = Arc::new(AppState::new(registry, &config));
        state.mark_ready();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app(state)).await;
        });
        Server {
            url,
            client: reqwest::Client::new(),
            task,
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

async fn decode(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// An Open Inference Protocol request for rows of a bundle's records.
pub fn infer_request(
    manifest: &preflight_bundle::Manifest,
    rows: &[&preflight_bundle::Record],
    parameters: Option<Value>,
) -> Value {
    let inputs: Vec<Value> = manifest
        .inputs
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let data: Vec<Value> = rows.iter().map(|r| r.inputs[i].to_json()).collect();
            json!({
                "name": f.name,
                "datatype": f.datatype.as_str(),
                "shape": [rows.len(), 1],
                "data": data,
            })
        })
        .collect();
    let mut request = json!({ "inputs": inputs });
    if let Some(p) = parameters {
        request["parameters"] = p;
    }
    request
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
