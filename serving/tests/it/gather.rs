//! Overlapping requests to one version run together (serving.md, "Gathered
//! runs"), and each still gets the answer it gets alone, bit for bit.

use std::time::Duration;

use preflight_bundle::Bundle;
use preflight_serving::{AdmissionLimits, ServeConfig};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::{Server, config, fixtures};

/// Requests in flight at once.
const OVERLAPPING: usize = 16;
const PATH: &str = "/v2/models/eta-madrid/versions/2/infer";
const RUNS: &str = r#"preflight_model_gathered_runs_total{model="eta-madrid",version="2"}"#;
const REQUESTS: &str = r#"preflight_model_gathered_requests_total{model="eta-madrid",version="2"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_requests_get_the_answers_they_get_alone() {
    let models = fixtures().join("models");
    // However slow a busy machine makes the runs, none is shed.
    let server = Server::with_config(ServeConfig {
        admission: AdmissionLimits {
            queue_wait: Duration::from_secs(5),
            ..AdmissionLimits::for_cores(2)
        },
        ..config(&models)
    })
    .await;
    let bundle = Bundle::open(&models.join("eta-madrid/2")).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("samples present");
    let samples = &samples[..OVERLAPPING];
    let requests: Vec<Value> = samples
        .iter()
        .map(|s| bundle.manifest().infer_request(&[s]))
        .collect();

    let mut alone = Vec::new();
    for request in &requests {
        let (status, body) = server.post(PATH, request).await;
        assert_eq!(status, 200, "{body}");
        alone.push(body["outputs"].clone());
    }
    assert_eq!(
        server.metric(RUNS).await,
        0,
        "one at a time, nothing overlaps"
    );

    // The first round that overlaps starts the check; later rounds are
    // gathered. Each round sends its samples at once.
    for _ in 0..50 {
        let mut round = JoinSet::new();
        for (i, request) in requests.iter().enumerate() {
            let (client, url, request) = (
                server.client.clone(),
                format!("{}{PATH}", server.url),
                request.clone(),
            );
            round.spawn(async move {
                let response = client.post(url).json(&request).send().await;
                let response = response.expect("POST");
                let status = response.status().as_u16();
                (i, status, response.json::<Value>().await.expect("JSON"))
            });
        }
        while let Some(answered) = round.join_next().await {
            let (i, status, body) = answered.expect("request task");
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                body["outputs"], alone[i],
                "sample {}: the answer with others differs from alone",
                samples[i].id
            );
        }
        let (runs, gathered) = (server.metric(RUNS).await, server.metric(REQUESTS).await);
        if gathered > runs {
            return;
        }
    }
    panic!(
        "in 50 rounds of {} overlapping requests no gathered run answered two",
        requests.len()
    );
}
