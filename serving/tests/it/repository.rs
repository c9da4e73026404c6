//! The repository: hundreds of models, broken bundles among them, and the
//! repository API for loading, pinning and unloading.

use preflight_bundle::{Bundle, Record};
use preflight_serving::RepositoryAccess;
use serde_json::{Value, json};

use crate::{Server, config, copy_bundle, fixtures, output};

fn index_of(body: &Value) -> Vec<(String, String, String)> {
    body.as_array()
        .expect("index")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_owned(),
                e["version"].as_str().expect("version").to_owned(),
                e["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_models_are_all_served() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = fixtures().join("models/eta-nairobi/1");
    for i in 0..300 {
        copy_bundle(&source, tmp.path(), &format!("eta-city-{i:03}"), 1);
    }
    let server = Server::start(tmp.path()).await;
    let (status, body) = server.post("/v2/repository/index", &json!({})).await;
    assert_eq!(status, 200);
    let index = index_of(&body);
    assert_eq!(index.len(), 300);
    assert!(
        index.iter().all(|(_, _, state)| state == "ready"),
        "{index:?}"
    );

    let bundle = Bundle::open(&source).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let rows: Vec<&Record> = samples.iter().take(3).collect();
    let request = bundle.manifest().infer_request(&rows);
    let mut answers = Vec::new();
    for i in [0, 149, 299] {
        let (status, body) = server
            .post(&format!("/v2/models/eta-city-{i:03}/infer"), &request)
            .await;
        assert_eq!(status, 200, "{body}");
        answers.push(output(&body, "eta_minutes"));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "copies of one model answer alike"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_bundles_do_not_stop_the_others() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = fixtures().join("models/eta-lisbon/1");
    copy_bundle(&source, tmp.path(), "eta-good", 1);
    let bad_manifest = copy_bundle(&source, tmp.path(), "eta-bad-manifest", 1);
    std::fs::write(bad_manifest.join("manifest.toml"), "[model]\nname = ").expect("write");
    let wrong_version = copy_bundle(&source, tmp.path(), "eta-misplaced", 1);
    std::fs::rename(&wrong_version, wrong_version.with_file_name("3")).expect("rename");
    std::fs::create_dir_all(tmp.path().join("Not A Model/1")).expect("mkdir");
    let server = Server::start(tmp.path()).await;

    let (_, body) = server.post("/v2/repository/index", &json!({})).await;
    assert_eq!(
        index_of(&body),
        [("eta-good".to_owned(), "1".to_owned(), "ready".to_owned())]
    );
    // Loaded, and not ready: readiness names every folder left out, and why.
    let (status, ready) = server.get("/v2/health/ready").await;
    assert_eq!((status, &ready["loading"]), (503, &json!(false)), "{ready}");
    let models = ready["models"].as_object().expect("models");
    let keys: Vec<&str> = models.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["Not A Model", "eta-bad-manifest/1", "eta-misplaced/3"],
        "{ready}"
    );
    assert!(
        !ready
            .to_string()
            .contains(&tmp.path().display().to_string()),
        "no absolute path: {ready}"
    );
    assert!(
        models
            .values()
            .all(|why| why.as_str().is_some_and(|w| w.starts_with("skipped: "))),
        "{ready}"
    );
    assert_eq!(server.get("/v2/models/eta-bad-manifest").await.0, 404);
}

/// A reload that would serve worse than what serves (here: a model.onnx
/// corrupted on disk) is refused with why, and the healthy version serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_would_serve_worse_keeps_what_serves() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = fixtures().join("models/eta-lisbon/1");
    let bundle_dir = copy_bundle(&source, tmp.path(), "eta-reload", 1);
    let server = Server::start(tmp.path()).await;
    std::fs::remove_file(bundle_dir.join("model.onnx")).expect("unlink");
    std::fs::write(bundle_dir.join("model.onnx"), b"not an onnx model").expect("corrupt");

    let (status, body) = server
        .post("/v2/repository/models/eta-reload/load", &json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("version 1 degraded instead of ready")
            && error.contains("the versions serving are kept"),
        "{body}"
    );
    let (status, ready) = server.get("/v2/models/eta-reload/ready").await;
    assert_eq!((status, &ready["state"]), (200, &json!("ready")), "{ready}");
    assert_eq!(server.get("/v2/health/ready").await.0, 200);
}

/// Requests without a version go to the highest version in the best state:
/// a degraded version 2 does not hide a ready version 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_version_is_the_highest_ready_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = fixtures().join("models/eta-lisbon/1");
    copy_bundle(&source, tmp.path(), "eta-two", 1);
    let second = copy_bundle(&source, tmp.path(), "eta-two", 2);
    std::fs::remove_file(second.join("model.onnx")).expect("unlink");
    std::fs::write(second.join("model.onnx"), b"not an onnx model").expect("corrupt");
    let server = Server::start(tmp.path()).await;
    let bundle = Bundle::open(&source).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let request = bundle.manifest().infer_request(&[&samples[0]]);
    let (status, body) = server.post("/v2/models/eta-two/infer", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_version"], "1", "{body}");
    assert!(body["parameters"]["fallback"].is_null(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_pin_and_unload() {
    let server = Server::start(&fixtures().join("models")).await;
    let bundle = Bundle::open(&fixtures().join("models/eta-madrid/1")).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let request = bundle.manifest().infer_request(&[&samples[0]]);

    let (_, body) = server.post("/v2/models/eta-madrid/infer", &request).await;
    assert_eq!(
        body["model_version"], "2",
        "the highest version answers by default"
    );

    // Roll back: pin version 1.
    let (status, body) = server
        .post(
            "/v2/repository/models/eta-madrid/load",
            &json!({"parameters": {"version": "1"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The other version stays loaded beside the pinned one.
    let (_, meta) = server.get("/v2/models/eta-madrid").await;
    assert_eq!(meta["versions"], json!(["1", "2"]));
    let (_, body) = server.post("/v2/models/eta-madrid/infer", &request).await;
    assert_eq!(body["model_version"], "1");

    let (status, _) = server
        .post("/v2/repository/models/eta-madrid/unload", &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        server.post("/v2/models/eta-madrid/infer", &request).await.0,
        404
    );
    assert_eq!(
        server
            .post("/v2/repository/models/eta-madrid/unload", &json!({}))
            .await
            .0,
        404
    );

    let (status, _) = server
        .post_raw("/v2/repository/models/eta-madrid/load", Vec::new())
        .await;
    assert_eq!(status, 200);
    let (_, meta) = server.get("/v2/models/eta-madrid").await;
    assert_eq!(meta["versions"], json!(["1", "2"]));

    assert_eq!(
        server
            .post("/v2/repository/models/eta-atlantis/load", &json!({}))
            .await
            .0,
        404
    );
    let (status, body) = server
        .post(
            "/v2/repository/models/eta-madrid/load",
            &json!({"parameters": {"version": "9"}}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_api_takes_a_bearer_token() {
    let mut config = config(&fixtures().join("models"));
    config.repository = RepositoryAccess::Token("s3cret".into());
    let server = Server::with_config(config).await;
    let (status, body) = server.post("/v2/repository/index", &json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        server
            .post("/v2/repository/models/eta-madrid/unload", &json!({}))
            .await
            .0,
        401
    );
    let response = server
        .client
        .post(format!("{}/v2/repository/index", server.url))
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("index");
    assert_eq!(response.status(), 200);
    // A wrong token of the right length is refused too.
    let response = server
        .client
        .post(format!("{}/v2/repository/index", server.url))
        .bearer_auth("s3cre7")
        .send()
        .await
        .expect("index");
    assert_eq!(response.status(), 401);
    // The token is checked before the body is read: a request that announces
    // 8 MiB and sends none of it is refused at once, not waited for.
    let answer = server
        .by_hand(
            "POST /v2/repository/models/eta-madrid/load HTTP/1.1\r\nHost: {addr}\r\n\
            Content-Type: application/json\r\nContent-Length: 8388608\r\n\r\n",
        )
        .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // Inference is not behind the token.
    assert_eq!(server.get("/v2/models/eta-madrid").await.0, 200);
}

/// Without a token, and not opened on purpose, the repository API is off:
/// nobody changes what a server serves by reaching its port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_repository_api_is_off() {
    let mut config = config(&fixtures().join("models"));
    config.repository = RepositoryAccess::Off;
    let server = Server::with_config(config).await;
    let (status, body) = server
        .post("/v2/repository/models/eta-madrid/unload", &json!({}))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("the repository API is off")),
        "{body}"
    );
    assert_eq!(server.get("/v2/models/eta-madrid/ready").await.0, 200);
}
