//! The fuzz targets' property, without AFL++: every seed of
//! `fuzz/corpus/infer_*` and every input AFL++ found that broke it
//! (`fuzz/regressions/infer_*`, when there are any) is sent as the body of an
//! inference request to `eta-madrid`, and none may get a 5xx or fail to be
//! answered. `fuzz/` is outside the workspace; its check is repeated here.

use preflight_testkit::fuzz_inputs;

use crate::{Server, fixtures};

async fn replay(target: &str, path: &str) {
    let corpus = fuzz_inputs("corpus", target);
    assert!(!corpus.is_empty(), "no seeds in fuzz/corpus/{target}");
    let server = Server::start(&fixtures().join("models")).await;
    for file in corpus.iter().chain(&fuzz_inputs("regressions", target)) {
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
