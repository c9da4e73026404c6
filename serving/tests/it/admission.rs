//! Admission control over HTTP: a costly batch beyond the run slots is shed
//! with 503 and `Retry-After`, and a deadline stops the run it cut short.
//!
//! Both hold a run slot with one long batch (20,000 rows of a model that
//! also runs a dense block) and act while `/metrics` says it runs: no sleep
//! decides a verdict.

use std::path::Path;
use std::time::Duration;

use preflight_bundle::{Bundle, Record};
use preflight_serving::AdmissionLimits;
use serde_json::{Value, json};

use crate::{Server, config, copy_bundle, fixtures};

/// A request of `rows` rows, the bundle's samples over and over.
fn batch(bundle: &Path, rows: usize) -> Value {
    let bundle = Bundle::open(bundle).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let rows: Vec<&Record> = samples.iter().cycle().take(rows).collect();
    bundle.manifest().infer_request(&rows)
}

/// A server of `bundle` as `slow/1`, with one run slot and a short wait.
async fn one_slot(bundle: &Path, tmp: &Path) -> Server {
    copy_bundle(bundle, tmp, "slow", 1);
    Server::with_config(preflight_serving::ServeConfig {
        admission: AdmissionLimits {
            max_runs: 1,
            queue_wait: Duration::from_millis(1),
            ..AdmissionLimits::for_cores(2)
        },
        ..config(tmp)
    })
    .await
}

/// Sends `request` in the background, and returns once its batch runs.
async fn while_running(server: &Server, request: Value) -> tokio::task::JoinHandle<(u16, Value)> {
    let (client, url) = (server.client.clone(), server.url.clone());
    let long = tokio::spawn(async move {
        let response = client
            .post(format!("{url}/v2/models/slow/versions/1/infer"))
            .json(&request)
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("JSON"))
    });
    while server.metric("preflight_model_runs").await == 0 {
        assert!(
            !long.is_finished(),
            "the long batch ended before a second request could meet it"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    long
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_costly_batch_beyond_the_run_slots_is_shed_with_retry_after() {
    let tmp = tempfile::tempdir().expect("tmp");
    let bundle = fixtures().join("defects/bundles/much-slower-release/eta-madrid/2");
    let server = one_slot(&bundle, tmp.path()).await;
    let long = while_running(&server, batch(&bundle, 20_000)).await;

    let response = server
        .client
        .post(format!("{}/v2/models/slow/versions/1/infer", server.url))
        .json(&batch(&bundle, 17))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"error": "model 'slow' version 1: all 1 model run slots stayed busy for 1 ms"})
    );

    let (status, body) = long.await.expect("join");
    assert_eq!(status, 200, "{body}");
    let metrics = server.text("/metrics").await;
    assert!(
        metrics.contains(
            "preflight_requests_total{model=\"slow\",version=\"1\",outcome=\"shed\"} 1\n"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_stops_the_run_it_cut_short_and_frees_its_slot() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Its model takes longer than its 2 ms deadline on every call.
    let bundle = fixtures().join("defects/bundles/deadline-met-by-fallback/eta-madrid/1");
    let server = one_slot(&bundle, tmp.path()).await;

    let (status, body) = server
        .post("/v2/models/slow/versions/1/infer", &batch(&bundle, 20_000))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["parameters"]["fallback_reason"], "deadline");
    // ONNX Runtime ends the run at its next node; the slot is then free.
    while server.metric("preflight_model_runs").await > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(server.metric("preflight_runs_stopped_total").await, 1);
}
