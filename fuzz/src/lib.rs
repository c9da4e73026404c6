//! The checks of the fuzz targets, as plain functions: each binary of
//! `src/bin/` hands AFL++'s inputs to one of them, and the regression tests
//! of `serving` and `bundle` repeat the same properties on the corpus
//! without AFL++ (see README.md).
//!
//! - [`infer_v2`] and [`infer_v1`]: the bytes, as the body of an inference
//!   request to `eta-madrid` (Open Inference Protocol v2 or KServe v1), never
//!   make the server panic nor answer 5xx: a loaded fixture model, asked one
//!   request at a time, has no reason to be unavailable or overloaded.
//! - [`manifest`]: the bytes, as a manifest's text, never make the parser
//!   panic; an error is a fine answer.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use preflight_serving::{AppState, OrtBackend, OrtOptions, ServeConfig, app, find_library};
use tower::ServiceExt;

/// The committed fixture repository.
pub const MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/models");

/// The v2 route fuzzed: a version named, as most clients do.
pub const V2_INFER: &str = "/v2/models/eta-madrid/versions/2/infer";

/// The KServe v1 route fuzzed: the model's default version.
pub const V1_PREDICT: &str = "/v1/models/eta-madrid:predict";

static ROUTER: OnceLock<Router> = OnceLock::new();

thread_local! {
    /// Made on first use, in the process that fuzzes: never before AFL++'s
    /// fork server forks it.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("a tokio runtime: {e}"));
}

/// The server's routes on the fixture repository, loaded, made once per
/// process: ONNX Runtime (`ORT_DYLIB_PATH`, else `target/ort/` above the
/// binary) and every fixture model. The binaries call it before the fork
/// server starts, so each fuzzing process starts with the models loaded.
pub fn router() -> &'static Router {
    ROUTER.get_or_init(|| {
        let library = find_library(None).unwrap_or_else(|e| panic!("{e}"));
        preflight_serving::init_ort(&library).unwrap_or_else(|e| panic!("{e}"));
        let backend = Arc::new(OrtBackend::new(OrtOptions::default()));
        let state = AppState::new(&ServeConfig::new(MODELS), backend);
        state.load().unwrap_or_else(|e| panic!("{MODELS}: {e}"));
        app(Arc::new(state))
    })
}

/// Loads the server and checks that the fuzzed version is ready, so a
/// broken setup fails at once rather than as a crash of every input.
pub fn init() {
    let ready = "/v2/models/eta-madrid/versions/2/ready";
    let request = Request::get(ready).body(Body::empty());
    let request = request.unwrap_or_else(|e| panic!("{e}"));
    // A runtime of its own, dropped before the fork server starts.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("a tokio runtime: {e}"));
    let (status, body) = runtime.block_on(send(request));
    assert_eq!(
        status,
        StatusCode::OK,
        "GET {ready}: {}",
        String::from_utf8_lossy(&body)
    );
}

/// Sends `request` to the router; its status and body.
async fn send(request: Request<Body>) -> (StatusCode, Bytes) {
    let response = match router().clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await;
    (status, body.unwrap_or_else(|e| panic!("the body: {e}")))
}

/// `POST path` with `bytes` as a JSON body; its status and body.
pub fn post(path: &str, bytes: &[u8]) -> (StatusCode, Bytes) {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes.to_vec()))
        .unwrap_or_else(|e| panic!("{e}"));
    RUNTIME.with(|runtime| runtime.block_on(send(request)))
}

/// Panics when `POST path` with `bytes` answers 5xx.
fn never_5xx(path: &str, bytes: &[u8]) {
    let (status, body) = post(path, bytes);
    if status.is_server_error() {
        let answer: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned().into());
        panic!(
            "POST {path} answered {status}: {answer}\nrequest: {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// The Open Inference Protocol (v2) request decoding: no panic, no 5xx.
pub fn infer_v2(bytes: &[u8]) {
    never_5xx(V2_INFER, bytes);
}

/// The KServe v1 request decoding: no panic, no 5xx.
pub fn infer_v1(bytes: &[u8]) {
    never_5xx(V1_PREDICT, bytes);
}

/// Manifest parsing and validation, and the text of its errors and
/// warnings: no panic. Bytes that are not UTF-8 are skipped: a manifest is
/// read as text before it is parsed.
pub fn manifest(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match preflight_bundle::Manifest::parse(text, Path::new("fuzz/manifest.toml")) {
        Ok(manifest) => {
            for warning in &manifest.warnings {
                std::hint::black_box(warning.to_string());
            }
        }
        Err(error) => {
            std::hint::black_box(error.to_string());
        }
    }
}
