//! Monitoring over real HTTP: drift on one input shows on that input only,
//! the live error is the metric over the targets posted back, and feedback
//! for an id the server does not hold is refused, naming it.

use preflight_bundle::{Bundle, Record, Value as Cell};
use preflight_serving::MonitorLimits;
use serde_json::{Value, json};

use crate::{Server, config, fixtures};

pub(crate) const MODEL: &str = "eta-madrid";
pub(crate) const VERSION: u64 = 2;

pub(crate) fn samples() -> (Bundle, Vec<Record>) {
    let dir = fixtures().join(format!("models/{MODEL}/{VERSION}"));
    let bundle = Bundle::open(&dir).expect("the fixture bundle");
    let samples = bundle.samples().expect("samples").expect("samples.jsonl");
    (bundle, samples)
}

/// The rows as one request body, each changed by `change` first.
pub(crate) fn request(bundle: &Bundle, rows: &[Record], change: &dyn Fn(&mut Vec<Cell>)) -> Value {
    let rows: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            let mut row = r.inputs.clone();
            change(&mut row);
            row
        })
        .collect();
    bundle.manifest().infer_request(&rows)
}

pub(crate) async fn infer(server: &Server, body: &Value) -> Value {
    let path = format!("/v2/models/{MODEL}/versions/{VERSION}/infer");
    let (status, answer) = server.post(&path, body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The monitor, once it has seen `rows` rows in all: it runs beside the
/// requests, so it may be a moment behind them.
async fn monitor_after(server: &Server, rows: u64) -> Value {
    let path = format!("/v2/models/{MODEL}/versions/{VERSION}/monitor");
    for _ in 0..200 {
        let (status, report) = server.get(&path).await;
        assert_eq!(status, 200, "{report}");
        if report["rows_seen"].as_u64() >= Some(rows) {
            return report;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the monitor did not see {rows} rows");
}

fn psi(report: &Value, input: &str) -> f64 {
    report["inputs"][input]["psi"]
        .as_f64()
        .unwrap_or_else(|| panic!("no psi for {input}: {report}"))
}

#[tokio::test]
async fn drift_on_one_input_shows_on_that_input_only() {
    let server = Server::start(&fixtures().join("models")).await;
    let (bundle, samples) = samples();
    let inputs: Vec<String> = bundle
        .manifest()
        .inputs
        .iter()
        .map(|f| f.name.clone())
        .collect();
    let distance = inputs
        .iter()
        .position(|n| n == "distance_km")
        .expect("distance_km");

    // Traffic like the training data's: no input drifts.
    for chunk in samples.chunks(50) {
        infer(&server, &request(&bundle, chunk, &|_| {})).await;
    }
    let report = monitor_after(&server, samples.len() as u64).await;
    assert_eq!(report["window"], 1000);
    for input in &inputs {
        assert!(
            psi(&report, input) < 0.1,
            "{input} drifts on training-like rows: {report}"
        );
    }
    assert!(
        report["outputs"]["eta_minutes"]["psi"].as_f64() < Some(0.1),
        "{report}"
    );

    // Then every distance tripled, twice over: the window holds only them.
    let tripled = |row: &mut Vec<Cell>| {
        if let Cell::Float(x) = row[distance] {
            row[distance] = Cell::Float(x * 3.0);
        }
    };
    for _ in 0..2 {
        for chunk in samples.chunks(50) {
            infer(&server, &request(&bundle, chunk, &tripled)).await;
        }
    }
    let report = monitor_after(&server, 3 * samples.len() as u64).await;
    assert_eq!(report["rows"], 1000);
    assert!(psi(&report, "distance_km") > 0.25, "{report}");
    for input in inputs.iter().filter(|n| *n != "distance_km") {
        assert!(
            psi(&report, input) < 0.1,
            "{input} drifts with distance: {report}"
        );
    }
    assert!(report["inputs"]["distance_km"]["out_of_range_rate"].as_f64() > Some(0.0));

    // The same figures are gauges.
    let metrics = server.text("/metrics").await;
    let series = format!(
        "preflight_input_psi{{model=\"{MODEL}\",version=\"{VERSION}\",input=\"distance_km\"}}"
    );
    let line = metrics
        .lines()
        .find(|l| l.starts_with(&series))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
    let value: f64 = line[series.len()..].trim().parse().expect("a number");
    assert!((value - psi(&report, "distance_km")).abs() < 1e-9, "{line}");
}

#[tokio::test]
async fn an_unknown_category_is_a_rate_of_its_own() {
    let server = Server::start(&fixtures().join("models")).await;
    let (bundle, samples) = samples();
    let vehicle = bundle.manifest().input("vehicle").expect("vehicle").0;
    let drone = |row: &mut Vec<Cell>| row[vehicle] = Cell::Text("drone".to_owned());
    infer(&server, &request(&bundle, &samples[..100], &|_| {})).await;
    infer(&server, &request(&bundle, &samples[100..125], &drone)).await;
    let report = monitor_after(&server, 125).await;
    let rate = report["inputs"]["vehicle"]["unknown_category_rate"].as_f64();
    assert_eq!(rate, Some(0.2), "{report}");
}

#[tokio::test]
async fn the_live_error_is_the_metric_over_the_targets_posted_back() {
    let server = Server::start(&fixtures().join("models")).await;
    let (bundle, samples) = samples();

    // One batch under an id of the client's, one row under the server's.
    let mut batch = request(&bundle, &samples[..3], &|_| {});
    batch["id"] = json!("order-17");
    let answer = infer(&server, &batch).await;
    assert_eq!(answer["id"], "order-17", "the id is echoed");
    let batch_predicted: Vec<f64> = answer["outputs"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let answer = infer(&server, &request(&bundle, &samples[3..4], &|_| {})).await;
    let made = answer["id"].as_str().expect("an id is made").to_owned();
    assert!(!made.is_empty());
    let one_predicted = answer["outputs"][0]["data"][0]
        .as_f64()
        .expect("a prediction");

    let feedback = format!("/v2/models/{MODEL}/feedback");
    let targets = [20.0, 30.0, 40.0];
    let (status, receipt) = server
        .post(
            &feedback,
            &json!({"feedback": [
                {"id": "order-17", "target": targets},
                {"id": made, "target": 25.0},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(
        (receipt["joined"].as_u64(), receipt["rows"].as_u64()),
        (Some(2), Some(4))
    );

    let errors: Vec<f64> = batch_predicted
        .iter()
        .zip(targets)
        .map(|(p, t)| (p - t).abs())
        .chain([(one_predicted - 25.0).abs()])
        .collect();
    let mae = errors.iter().sum::<f64>() / errors.len() as f64;
    let report = monitor_after(&server, 4).await;
    let live = &report["live_error"];
    assert_eq!(
        (live["metric"].as_str(), live["count"].as_u64()),
        (Some("mae"), Some(4))
    );
    let value = live["value"].as_f64().expect("a value");
    // The answers are FP32, the targets exact.
    assert!((value - mae).abs() < 1e-4, "{value} against {mae}");

    // Joined once: the same id again is unknown, and so is one never served.
    let (status, error) = server
        .post(&feedback, &json!({"id": "order-17", "target": 1.0}))
        .await;
    assert_eq!(status, 404, "{error}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("'order-17'")),
        "{error}"
    );
    let (status, error) = server
        .post(&feedback, &json!({"id": "nope", "target": 1.0}))
        .await;
    assert_eq!(status, 404, "{error}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("'nope'")),
        "{error}"
    );

    // A target count that does not match the rows is refused, and nothing
    // of that request is joined.
    let mut batch = request(&bundle, &samples[..2], &|_| {});
    batch["id"] = json!("order-18");
    infer(&server, &batch).await;
    let (status, error) = server
        .post(&feedback, &json!({"id": "order-18", "target": 3.0}))
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("2 rows")),
        "{error}"
    );
    let (status, _) = server
        .post(&feedback, &json!({"id": "order-18", "target": [1.0, 2.0]}))
        .await;
    assert_eq!(status, 200);

    let (status, error) = server.post(&feedback, &json!({"targets": 1})).await;
    assert_eq!(status, 400, "{error}");
    let (status, _) = server
        .post("/v2/models/nope/feedback", &json!({"id": "x", "target": 1}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_prediction_older_than_the_ttl_gets_no_feedback() {
    let mut config = config(&fixtures().join("models"));
    config.monitor = MonitorLimits {
        ttl: std::time::Duration::from_millis(300),
        ..MonitorLimits::default()
    };
    let server = Server::with_config(config).await;
    let (bundle, samples) = samples();
    let mut body = request(&bundle, &samples[..1], &|_| {});
    body["id"] = json!("late");
    infer(&server, &body).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let feedback = format!("/v2/models/{MODEL}/feedback");
    let (status, error) = server
        .post(&feedback, &json!({"id": "late", "target": 1.0}))
        .await;
    assert_eq!(status, 404, "{error}");
    assert!(
        error["error"].as_str().is_some_and(|e| e.contains("TTL")),
        "{error}"
    );
}
