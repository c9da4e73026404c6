//! The fuzz targets' property, without AFL++: every seed of
//! `fuzz/corpus/infer_*` and every input AFL++ found that broke it
//! (`fuzz/regressions/infer_*`, when there are any) is sent as the body of an
//! inference request to `eta-madrid`, and none may get a 5xx or fail to be
//! answered. `fuzz/` is outside the workspace; its check is repeated here.

use std::path::{Path, PathBuf};

use crate::{Server, fixtures};

/// The files of `fuzz/<kind>/<target>/`, none when the folder does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

async fn replay(target: &str, path: &str) {
    let corpus = inputs("corpus", target);
    assert!(!corpus.is_empty(), "no seeds in fuzz/corpus/{target}");
    let server = Server::start(&fixtures().join("models")).await;
    for file in corpus.iter().chain(&inputs("regressions", target)) {
        let name = file.display();
        let body = std::fs::read(file).unwrap_or_else(|e| panic!("{name}: {e}"));
        let response = server
            .client
            .post(format!("{}{path}", server.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let response = response.unwrap_or_else(|e| panic!("{name}: no answer: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            !status.is_server_error(),
            "{name}: POST {path} answered {status}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_v2_seed_or_regression_gets_a_5xx() {
    replay("infer_v2", "/v2/models/eta-madrid/versions/2/infer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_v1_seed_or_regression_gets_a_5xx() {
    replay("infer_v1", "/v1/models/eta-madrid:predict").await;
}
