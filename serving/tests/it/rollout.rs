//! Rollout over real HTTP: the canary's exact share, shadow divergence that
//! is zero for a version against itself and counted for a retrained one,
//! pin keeping the other versions loaded, and pins back and forth under
//! concurrent single-row and batch traffic losing nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use preflight_bundle::Bundle;
use serde_json::{Value, json};

use crate::{Server, fixtures};

const MODEL: &str = "eta-madrid";

fn request(rows: usize) -> Value {
    let bundle = Bundle::open(&fixtures().join("models/eta-madrid/2")).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let rows: Vec<_> = samples
        .iter()
        .take(rows)
        .map(|r| r.inputs.clone())
        .collect();
    bundle.manifest().infer_request(&rows)
}

async fn route(server: &Server, body: Value) -> (u16, Value) {
    server
        .post(&format!("/v2/repository/models/{MODEL}/route"), &body)
        .await
}

/// The series of `/metrics` for the route of `version` in `mode`.
async fn figure(server: &Server, family: &str, version: u64, mode: &str) -> Option<f64> {
    let text = server.text("/metrics").await;
    let series = format!("{family}{{model=\"{MODEL}\",version=\"{version}\",mode=\"{mode}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

/// The answering versions of `n` default requests.
async fn versions(server: &Server, n: usize) -> Vec<String> {
    let body = request(1);
    let mut answered = Vec::new();
    for _ in 0..n {
        let (status, answer) = server
            .post(&format!("/v2/models/{MODEL}/infer"), &body)
            .await;
        assert_eq!(status, 200, "{answer}");
        answered.push(
            answer["model_version"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    answered
}

/// Waits until the shadow has dealt with `rows` rows, computed or shed.
async fn shadow_settled(server: &Server, version: u64, rows: f64) {
    for _ in 0..200 {
        let done = figure(server, "preflight_shadow_rows_total", version, "shadow").await;
        let shed = figure(server, "preflight_shadow_shed_total", version, "shadow").await;
        if done.unwrap_or(0.0) + shed.unwrap_or(0.0) >= rows {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the shadow did not deal with {rows} rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_and_shadow_take_their_share_of_the_default_traffic() {
    let server = Server::start(&fixtures().join("models")).await;

    let (status, body) = route(
        &server,
        json!({"version": "1", "mode": "canary", "percent": 30}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mode"], "canary");
    let answered = versions(&server, 100).await;
    assert_eq!(
        answered.iter().filter(|v| *v == "1").count(),
        30,
        "{answered:?}"
    );
    assert_eq!(
        figure(&server, "preflight_route_requests_total", 1, "canary").await,
        Some(30.0)
    );
    // A request for a version goes there, route or not.
    let (_, answer) = server
        .post(&format!("/v2/models/{MODEL}/versions/2/infer"), &request(1))
        .await;
    assert_eq!(answer["model_version"], "2");

    // Version 2 in shadow of itself: the same computation, no divergence.
    let (status, _) = route(
        &server,
        json!({"version": 2, "mode": "shadow", "percent": 100}),
    )
    .await;
    assert_eq!(status, 200);
    let answered = versions(&server, 20).await;
    assert!(answered.iter().all(|v| v == "2"), "{answered:?}");
    shadow_settled(&server, 2, 20.0).await;
    let rows = figure(&server, "preflight_shadow_rows_total", 2, "shadow")
        .await
        .unwrap_or(0.0);
    assert!(rows > 0.0, "no row computed in shadow");
    assert_eq!(
        figure(
            &server,
            "preflight_shadow_divergent_rows_total",
            2,
            "shadow"
        )
        .await,
        Some(0.0)
    );
    assert_eq!(
        figure(&server, "preflight_shadow_max_abs_error", 2, "shadow").await,
        Some(0.0)
    );

    // Version 1, retrained on half the orders, diverges from version 2.
    let (status, _) = route(
        &server,
        json!({"version": "1", "mode": "shadow", "percent": 100}),
    )
    .await;
    assert_eq!(status, 200);
    let answered = versions(&server, 20).await;
    assert!(
        answered.iter().all(|v| v == "2"),
        "the shadow never answers: {answered:?}"
    );
    shadow_settled(&server, 1, 20.0).await;
    let divergent = figure(
        &server,
        "preflight_shadow_divergent_rows_total",
        1,
        "shadow",
    )
    .await;
    assert!(divergent.unwrap_or(0.0) > 0.0, "{divergent:?}");
    let max = figure(&server, "preflight_shadow_max_abs_error", 1, "shadow").await;
    assert!(max.unwrap_or(0.0) > 0.01, "{max:?}");

    // Off: the default answers everything again.
    let (status, _) = route(&server, json!({"mode": "off"})).await;
    assert_eq!(status, 200);
    assert!(versions(&server, 10).await.iter().all(|v| v == "2"));

    for (body, status, says) in [
        (
            json!({"version": "1", "mode": "sideways", "percent": 5}),
            400,
            "mode must be",
        ),
        (
            json!({"version": "1", "mode": "canary", "percent": 101}),
            400,
            "percent must be",
        ),
        (
            json!({"version": "one", "mode": "canary", "percent": 5}),
            400,
            "version must be",
        ),
        (
            json!({"version": "9", "mode": "canary", "percent": 5}),
            404,
            "no version 9 loaded",
        ),
    ] {
        let (got, answer) = route(&server, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(says) && error.contains(MODEL),
            "{body}: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_back_and_forth_under_traffic_lose_nothing() {
    let server = Arc::new(Server::start(&fixtures().join("models")).await);
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for rows in [1, 1, 50] {
        let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
        let (sent, failed) = (Arc::clone(&sent), Arc::clone(&failed));
        clients.push(tokio::spawn(async move {
            let body = request(rows);
            while !stop.load(Ordering::Relaxed) {
                let (status, _) = server
                    .post(&format!("/v2/models/{MODEL}/infer"), &body)
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let load = format!("/v2/repository/models/{MODEL}/load");
    for version in ["1", "2", "1", "2", "1"] {
        let (status, body) = server
            .post(&load, &json!({"parameters": {"version": version}}))
            .await;
        assert_eq!(status, 200, "{body}");
        // Both versions stay loaded; the pinned one answers by default.
        let (_, meta) = server.get(&format!("/v2/models/{MODEL}")).await;
        assert_eq!(meta["versions"], json!(["1", "2"]));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client");
    }
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 20, "only {sent} requests");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "of {sent}");
    assert!(versions(&server, 3).await.iter().all(|v| v == "1"));

    // A load ends a route.
    let (status, _) = route(
        &server,
        json!({"version": "2", "mode": "canary", "percent": 100}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(versions(&server, 3).await.iter().all(|v| v == "2"));
    let (status, _) = server
        .post(&load, &json!({"parameters": {"version": "1"}}))
        .await;
    assert_eq!(status, 200);
    assert!(versions(&server, 3).await.iter().all(|v| v == "1"));
}
