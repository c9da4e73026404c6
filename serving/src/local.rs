//! The server inside the caller's process and async runtime, on a free
//! loopback port, and its gRPC service on another: how tests, benchmarks
//! and tools run it without a child process. `preflight-serve` itself
//! answers liveness before its models are loaded; a [`LocalServer`] listens
//! only once they are.

use std::sync::Arc;

use crate::config::ServeConfig;
use crate::onnx::{OrtBackend, OrtOptions, init_ort};
use crate::routes::app;
use crate::state::AppState;
use preflight_ort::OrtInitError;

/// A loaded server on `127.0.0.1:0`; it stops when dropped.
#[derive(Debug)]
pub struct LocalServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The gRPC service's `http://127.0.0.1:PORT`, another port.
    pub grpc: String,
    pub state: Arc<AppState>,
    task: tokio::task::JoinHandle<()>,
}

/// Why a [`LocalServer`] did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Ort(#[from] OrtInitError),
    #[error(transparent)]
    Repository(#[from] preflight_bundle::Error),
    #[error("cannot listen on 127.0.0.1:0: {0}")]
    Listen(#[from] std::io::Error),
}

impl LocalServer {
    /// Starts ONNX Runtime, found as `preflight-serve` finds it without
    /// `--ort-lib`, loads `config.models` and listens.
    pub async fn start(config: ServeConfig, ort: OrtOptions) -> Result<Self, StartError> {
        init_ort(&preflight_ort::find_library(None)?)?;
        let state = Arc::new(AppState::new(&config, Arc::new(OrtBackend::new(ort))));
        let loading = Arc::clone(&state);
        tokio::task::spawn_blocking(move || loading.load())
            .await
            .map_err(std::io::Error::other)??;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let grpc = format!("http://{}", grpc_listener.local_addr()?);
        let router = app(Arc::clone(&state));
        let (rest, messages) = (Arc::clone(&state), config.body.max_bytes);
        let task = tokio::spawn(async move {
            let grpc = crate::grpc::serve(grpc_listener, rest, messages, std::future::pending());
            let _ = tokio::join!(axum::serve(listener, router).into_future(), grpc);
        });
        Ok(Self {
            url,
            grpc,
            state,
            task,
        })
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
