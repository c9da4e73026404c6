//! The fast fallback answers when the main model errors, overruns its
//! deadline or could not be loaded, and the response says so.

use preflight_bundle::{Bundle, Record, Tolerance};
use serde_json::json;

use crate::{Server, copy_bundle, fixtures, output};

/// The fallback computes in f64 like the training process; the response narrows to FP32.
const FALLBACK_PARITY: Tolerance = Tolerance {
    abs: 1e-4,
    rel: 1e-6,
};

fn fallback_expected(sample: &Record) -> f64 {
    sample.fallback_outputs.as_ref().expect("fallback_outputs")[0]
        .as_f64()
        .expect("number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_deadline_sends_every_row_to_the_fallback() {
    let models = fixtures().join("models");
    let server = Server::start(&models).await;
    let bundle = Bundle::open(&models.join("eta-madrid/2")).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let rows: Vec<&Record> = samples.iter().take(50).collect();
    let mut request = bundle.manifest().infer_request(&rows);
    request["parameters"] = json!({"deadline_ms": 0});
    let (status, body) = server.post("/v2/models/eta-madrid/infer", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["parameters"],
        json!({"fallback": true, "fallback_reason": "deadline"})
    );
    for (sample, served) in rows.iter().zip(output(&body, "eta_minutes")) {
        assert!(
            FALLBACK_PARITY.accepts(served, fallback_expected(sample)),
            "row '{}': {served}",
            sample.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_slower_than_the_deadline_is_answered_by_the_fallback() {
    let models = fixtures().join("models");
    let server = Server::start(&models).await;
    let bundle = Bundle::open(&models.join("eta-madrid/1")).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    // 20,000 rows of a 200-tree GBDT take far longer than a millisecond.
    let rows: Vec<&Record> = samples.iter().cycle().take(20_000).collect();
    let mut request = bundle.manifest().infer_request(&rows);
    request["parameters"] = json!({"deadline_ms": 1});
    let (status, body) = server
        .post("/v2/models/eta-madrid/versions/1/infer", &request)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["parameters"]["fallback_reason"], "deadline");
    let served = output(&body, "eta_minutes");
    assert_eq!(served.len(), 20_000);
    assert!(FALLBACK_PARITY.accepts(served[0], fallback_expected(rows[0])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_error_is_answered_by_the_fallback() {
    // Exported with a fixed batch of 1: ONNX Runtime refuses any larger batch.
    let repo = fixtures().join("defects/bundles/fixed-batch-export");
    let server = Server::start(&repo).await;
    let bundle = Bundle::open(&repo.join("eta-lisbon/1")).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");

    let (status, body) = server
        .post(
            "/v2/models/eta-lisbon/infer",
            &bundle.manifest().infer_request(&[&samples[0]]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("parameters").is_none(),
        "one row is the main model's: {body}"
    );

    let pair = [&samples[0], &samples[1]];
    let (status, body) = server
        .post(
            "/v2/models/eta-lisbon/infer",
            &bundle.manifest().infer_request(&pair),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["parameters"],
        json!({"fallback": true, "fallback_reason": "error"})
    );
    for (sample, served) in pair.iter().zip(output(&body, "eta_minutes")) {
        assert!(FALLBACK_PARITY.accepts(served, fallback_expected(sample)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_cannot_load_is_served_degraded_by_its_fallback() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = fixtures().join("models/eta-lisbon/1");
    let degraded = copy_bundle(&source, tmp.path(), "eta-degraded", 1);
    std::fs::remove_file(degraded.join("model.onnx")).expect("unlink");
    std::fs::write(degraded.join("model.onnx"), b"not an onnx model").expect("corrupt");
    let dead = copy_bundle(&source, tmp.path(), "eta-dead", 1);
    std::fs::remove_file(dead.join("model.onnx")).expect("unlink");
    std::fs::write(dead.join("model.onnx"), b"not an onnx model").expect("corrupt");
    let manifest = std::fs::read_to_string(dead.join("manifest.toml")).expect("manifest");
    std::fs::write(
        dead.join("manifest.toml"),
        manifest.replace("fallback = \"fallback.json\"\n", ""),
    )
    .expect("no fallback");
    copy_bundle(&source, tmp.path(), "eta-fine", 1);
    let server = Server::start(tmp.path()).await;

    let (status, meta) = server.get("/v2/models/eta-degraded").await;
    assert_eq!(status, 200);
    assert_eq!(meta["state"], "degraded");
    assert!(
        meta["degraded_reason"]
            .as_str()
            .expect("reason")
            .starts_with("model.onnx: ONNX Runtime cannot load it"),
        "{meta}"
    );
    // Not ready, since its main model does not answer; but it answers.
    let (status, ready) = server.get("/v2/models/eta-degraded/ready").await;
    assert_eq!(
        (status, &ready["state"], &ready["answers"]),
        (503, &json!("degraded"), &json!(true)),
        "{ready}"
    );
    let (status, ready) = server.get("/v2/health/ready").await;
    assert_eq!((status, &ready["loading"]), (503, &json!(false)), "{ready}");
    let models = ready["models"].as_object().expect("models");
    let states: Vec<(&str, &str)> = models
        .iter()
        .map(|(key, why)| {
            (
                key.as_str(),
                why.as_str().unwrap_or("").split(':').next().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("eta-dead/1", "unavailable"),
            ("eta-degraded/1", "degraded")
        ]
    );

    let bundle = Bundle::open(&degraded).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let (status, body) = server
        .post(
            "/v2/models/eta-degraded/infer",
            &bundle.manifest().infer_request(&[&samples[3]]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["parameters"]["fallback_reason"], "not_loaded");
    assert!(FALLBACK_PARITY.accepts(
        output(&body, "eta_minutes")[0],
        fallback_expected(&samples[3])
    ));

    // Without a fallback, nothing can answer: 503, not a crash, and the others serve on.
    let (status, _) = server.get("/v2/models/eta-dead/ready").await;
    assert_eq!(status, 503);
    let (status, body) = server
        .post(
            "/v2/models/eta-dead/infer",
            &bundle.manifest().infer_request(&[&samples[3]]),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("could not be loaded"),
        "{body}"
    );
    let (status, body) = server
        .post(
            "/v2/models/eta-fine/infer",
            &bundle.manifest().infer_request(&[&samples[3]]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("parameters").is_none());
}

/// A fallback.json that is missing or malformed does not take a healthy
/// model offline: its main model serves, and the state says `no_fallback`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_a_usable_fallback_is_served_by_its_main_model() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = fixtures().join("models/eta-lisbon/1");
    let missing = copy_bundle(&source, tmp.path(), "eta-missing", 1);
    std::fs::remove_file(missing.join("fallback.json")).expect("unlink");
    let malformed = copy_bundle(&source, tmp.path(), "eta-malformed", 1);
    std::fs::remove_file(malformed.join("fallback.json")).expect("unlink");
    std::fs::write(malformed.join("fallback.json"), "{\"kind\": ").expect("write");
    let server = Server::start(tmp.path()).await;
    let bundle = Bundle::open(&source).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let request = bundle.manifest().infer_request(&[&samples[0]]);

    for (model, says) in [
        ("eta-missing", "'fallback.json' is not in the bundle"),
        ("eta-malformed", "fallback.json:1"),
    ] {
        let (status, meta) = server.get(&format!("/v2/models/{model}")).await;
        assert_eq!(
            (status, &meta["state"]),
            (200, &json!("no_fallback")),
            "{meta}"
        );
        let (status, ready) = server.get(&format!("/v2/models/{model}/ready")).await;
        assert_eq!((status, &ready["answers"]), (503, &json!(true)), "{ready}");
        let reason = ready["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(says), "{ready}");
        assert!(
            !reason.contains(&tmp.path().display().to_string()),
            "{ready}"
        );
        let (status, body) = server
            .post(&format!("/v2/models/{model}/infer"), &request)
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.get("parameters").is_none(),
            "the main model answers: {body}"
        );
    }
    let metrics = server.text("/metrics").await;
    assert!(
        metrics.contains("preflight_models{state=\"no_fallback\"} 2"),
        "{metrics}"
    );
}
