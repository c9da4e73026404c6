//! The Open Inference Protocol endpoints and Preflight's extensions.

use serde_json::json;

use crate::{Server, fixtures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metadata() {
    let server = Server::start(&fixtures().join("models")).await;
    assert_eq!(server.get("/v2/health/live").await.0, 200);
    assert_eq!(server.get("/v2/health/ready").await.0, 200);

    let (status, meta) = server.get("/v2").await;
    assert_eq!(status, 200);
    assert_eq!(meta["name"], "preflight-serve");
    assert!(
        meta["extensions"]
            .as_array()
            .expect("extensions")
            .contains(&json!("model_repository"))
    );

    let (status, model) = server.get("/v2/models/eta-madrid").await;
    assert_eq!(status, 200, "{model}");
    assert_eq!(model["versions"], json!(["1", "2"]));
    assert_eq!(model["platform"], "onnxruntime_onnx");
    assert_eq!(model["state"], "ready");
    let inputs: Vec<&str> = model["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| i["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        inputs,
        [
            "distance_km",
            "hour",
            "day_of_week",
            "vehicle",
            "prep_time_min",
            "items",
            "rain"
        ]
    );
    assert_eq!(
        model["inputs"][3],
        json!({"name": "vehicle", "datatype": "BYTES", "shape": [-1, 1]})
    );
    assert_eq!(
        model["outputs"],
        json!([{"name": "eta_minutes", "datatype": "FP32", "shape": [-1, 1]}])
    );

    let (status, v1) = server.get("/v2/models/eta-madrid/versions/1").await;
    assert_eq!(status, 200);
    assert_eq!(v1["name"], "eta-madrid");
    assert_eq!(server.get("/v2/models/eta-madrid/ready").await.0, 200);
    assert_eq!(
        server.get("/v2/models/eta-madrid/versions/1/ready").await.0,
        200
    );
    assert_eq!(
        server.get("/v2/models/eta-madrid/versions/9/ready").await.0,
        404
    );
    assert_eq!(server.get("/v2/models/nowhere").await.0, 404);

    let (status, body) = server.get("/v2/no/such/route").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    let (status, body) = server.get("/v2/models/eta-madrid/infer").await;
    assert_eq!(status, 405, "{body}");
    assert!(body["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_oriented_predict_and_metrics() {
    let server = Server::start(&fixtures().join("models")).await;
    let row = json!({
        "distance_km": 2.5,
        "hour": 13,
        "day_of_week": 2,
        "vehicle": "bicycle",
        "prep_time_min": null,
        "items": 2,
        "rain": 0,
    });
    let (status, body) = server
        .post(
            "/v1/models/eta-lisbon:predict",
            &json!({"instances": [row, row]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let predictions = body["predictions"].as_array().expect("predictions");
    assert_eq!(predictions.len(), 2);
    let first = predictions[0]
        .as_f64()
        .expect("a single output is a plain number");
    assert!(first > 0.0 && first < 300.0);
    assert_eq!(predictions[0], predictions[1]);

    let (status, body) = server
        .post(
            "/v1/models/eta-lisbon:predict",
            &json!({"instances": [row], "parameters": {"deadline_ms": 0}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["parameters"]["fallback_reason"], "deadline");

    let text = server.text("/metrics").await;
    assert!(
        text.contains(
            "preflight_requests_total{model=\"eta-lisbon\",version=\"2\",outcome=\"ok\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains("preflight_rows_total{model=\"eta-lisbon\",version=\"2\"} 3"),
        "{text}"
    );
    assert!(
        text.contains(
            "preflight_fallback_total{model=\"eta-lisbon\",version=\"2\",reason=\"deadline\"} 1"
        ),
        "{text}"
    );
    let versions: usize = preflight_bundle::Repository::scan(&fixtures().join("models"))
        .expect("scan")
        .models()
        .iter()
        .map(|m| m.versions.len())
        .sum();
    assert!(
        text.contains(&format!("preflight_models{{state=\"ready\"}} {versions}")),
        "{text}"
    );
    // What a row costs is known once the model ran, and only then.
    let row_cost = |version: &str| -> f64 {
        let series = format!(
            "preflight_model_row_cost_seconds{{model=\"eta-lisbon\",version=\"{version}\"}} "
        );
        let line = text.lines().find_map(|l| l.strip_prefix(&series));
        line.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert!(row_cost("2") > 0.0, "{text}");
    assert_eq!(row_cost("1"), 0.0, "{text}");
    assert!(
        text.contains(
            "preflight_request_duration_seconds_count{model=\"eta-lisbon\",version=\"2\"} 2"
        ),
        "{text}"
    );

    // Names a client makes up add no series: they count in one, unlabelled.
    for i in 0..5 {
        let (status, _) = server
            .post(
                &format!("/v2/models/made-up-{i}/infer"),
                &json!({"inputs": []}),
            )
            .await;
        assert_eq!(status, 404);
    }
    let text = server.text("/metrics").await;
    assert!(!text.contains("made-up"), "{text}");
    assert!(
        text.contains("preflight_unmatched_requests_total{outcome=\"not_found\"} 5"),
        "{text}"
    );
}
