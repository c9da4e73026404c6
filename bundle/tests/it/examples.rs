//! Every example of BUNDLE.md, the format's contract with other teams, parses
//! to what it says.

use std::path::Path;

use approx::assert_relative_eq;
use preflight_bundle::{
    Bundle, Datatype, Direction, Fallback, Manifest, Metric, RecordFile, Repository, Task, Value,
    parse_records,
};

use crate::{BUNDLE_MD_FALLBACK, BUNDLE_MD_MANIFEST, bundle_dir};

const SAMPLE_LINE: &str = concat!(
    r#"{"id": "s0001", "inputs": {"distance_km": 3.2, "hour": 13, "vehicle": "car", "#,
    r#""prep_time_min": null}, "outputs": {"eta_minutes": 24.71}}"#,
);

const HOLDOUT_LINE: &str = concat!(
    r#"{"id": "h0001", "inputs": {"distance_km": 3.2, "hour": 13, "vehicle": "car", "#,
    r#""prep_time_min": null}, "target": {"eta_minutes": 26.0}}"#,
);

fn manifest() -> Manifest {
    Manifest::parse(BUNDLE_MD_MANIFEST, Path::new("manifest.toml"))
        .expect("BUNDLE.md manifest parses")
}

#[test]
fn manifest_example() {
    let m = manifest();
    assert_eq!(m.model.name, "eta-madrid");
    assert_eq!(m.model.version, 1);
    assert_eq!(m.model.task, Task::Regression);
    assert_eq!(m.producer.python.as_deref(), Some("3.11.7"));
    assert_eq!(m.producer.packages["skl2onnx"], "1.20.0");
    assert_eq!(m.runtime.model, "model.onnx");
    assert_eq!(m.runtime.fallback.as_deref(), Some("fallback.json"));
    assert_eq!(m.runtime.deadline_ms, Some(25));

    let names: Vec<_> = m
        .inputs
        .iter()
        .map(|f| (f.name.as_str(), f.datatype))
        .collect();
    assert_eq!(
        names,
        [
            ("distance_km", Datatype::Fp32),
            ("hour", Datatype::Int64),
            ("vehicle", Datatype::Bytes),
            ("prep_time_min", Datatype::Fp32),
        ]
    );
    assert_eq!((m.inputs[0].min, m.inputs[0].max), (Some(0.0), Some(150.0)));
    assert_eq!((m.inputs[1].min, m.inputs[1].max), (Some(0.0), Some(23.0)));
    assert_eq!(
        m.inputs[2].categories.as_deref().map(<[String]>::len),
        Some(4)
    );
    assert!(m.inputs[3].nullable && !m.inputs[0].nullable);
    assert_eq!(m.outputs[0].name, "eta_minutes");

    let c = &m.contract;
    let parity = c.parity.expect("parity");
    assert_eq!((parity.abs, parity.rel), (1e-3, 1e-4));
    let latency = c.latency.as_ref().expect("latency");
    assert_eq!(
        (
            latency.p50_ms,
            latency.p99_ms,
            latency.rate_per_s,
            latency.requests
        ),
        (5.0, 20.0, 200.0, 2000)
    );
    let size = c.size.as_ref().expect("size");
    assert_eq!(
        (size.max_model_bytes, size.max_growth),
        (Some(5_000_000), Some(0.25))
    );
    let quality = c.primary_quality().expect("quality");
    assert_eq!(
        (quality.metric, quality.max, quality.max_regression),
        (Metric::Mae, Some(6.0), Some(0.05))
    );
    assert_eq!(c.monotonic.len(), 1);
    assert_eq!(
        (c.monotonic[0].input.as_str(), c.monotonic[0].direction),
        ("distance_km", Direction::Increasing)
    );
}

#[test]
fn samples_example() {
    let rows = parse_records(
        SAMPLE_LINE,
        Path::new("samples.jsonl"),
        &manifest(),
        RecordFile::Samples,
    )
    .expect("parses");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, "s0001");
    assert_eq!(
        rows[0].inputs,
        [
            Value::Float(3.2),
            Value::Int(13),
            Value::Text("car".into()),
            Value::Null
        ]
    );
    assert_eq!(rows[0].outputs.as_deref(), Some(&[Value::Float(24.71)][..]));
}

#[test]
fn the_example_sample_travels_as_one_column_per_input_in_manifest_order() {
    let manifest = manifest();
    let rows = parse_records(
        SAMPLE_LINE,
        Path::new("samples.jsonl"),
        &manifest,
        RecordFile::Samples,
    )
    .expect("parses");
    let twice = [&rows[0], &rows[0]];
    let request = manifest.infer_request(&twice);
    let column = |name: &str, datatype: &str, value: serde_json::Value| {
        serde_json::json!({
            "name": name, "datatype": datatype, "shape": [2, 1], "data": [value, value],
        })
    };
    assert_eq!(
        request,
        serde_json::json!({"inputs": [
            column("distance_km", "FP32", 3.2.into()),
            column("hour", "INT64", 13.into()),
            column("vehicle", "BYTES", "car".into()),
            column("prep_time_min", "FP32", serde_json::Value::Null),
        ]})
    );
}

#[test]
fn holdout_example() {
    let rows = parse_records(
        HOLDOUT_LINE,
        Path::new("holdout.jsonl"),
        &manifest(),
        RecordFile::Holdout,
    )
    .expect("parses");
    assert_eq!(rows[0].target.as_deref(), Some(&[Value::Float(26.0)][..]));
    assert_eq!(rows[0].outputs, None);
}

#[test]
fn fallback_example() {
    let fallback = Fallback::parse(BUNDLE_MD_FALLBACK, Path::new("fallback.json"), &manifest())
        .expect("parses");
    let row = |d: f64, vehicle: &str| {
        [
            Value::Float(d),
            Value::Int(13),
            Value::Text(vehicle.into()),
            Value::Null,
        ]
    };
    // 12.3 + 2.7 * (3.2 - 5.2) / 3.9 + 1.2
    assert_relative_eq!(
        fallback.predict(&row(3.2, "car"))[0],
        12.3 + 2.7 * (3.2 - 5.2) / 3.9 + 1.2,
        max_relative = 1e-12
    );
    // An unseen category takes the __other__ weight.
    assert_relative_eq!(
        fallback.predict(&row(5.2, "scooter"))[0],
        12.3,
        max_relative = 1e-12
    );
    // A null numeric input takes its imputed value.
    let missing = [
        Value::Null,
        Value::Int(13),
        Value::Text("bicycle".into()),
        Value::Null,
    ];
    assert_relative_eq!(
        fallback.predict(&missing)[0],
        12.3 + 2.7 * (4.1 - 5.2) / 3.9 - 0.8,
        max_relative = 1e-12
    );
    // The output is clipped to [0, 300].
    assert_eq!(fallback.predict(&row(-1000.0, "car")), [0.0]);
}

#[test]
fn layout_example() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = bundle_dir(
        tmp.path(),
        "eta-madrid",
        1,
        &[
            ("manifest.toml", BUNDLE_MD_MANIFEST),
            ("model.onnx", "not read by this crate"),
            ("fallback.json", BUNDLE_MD_FALLBACK),
            ("samples.jsonl", SAMPLE_LINE),
            ("holdout.jsonl", HOLDOUT_LINE),
        ],
    );
    let repo = Repository::scan(tmp.path()).expect("scan");
    assert!(repo.problems().is_empty(), "{:?}", repo.problems());
    let entry = repo.model("eta-madrid").expect("model found");
    assert_eq!(entry.latest().dir, dir);

    let bundle = Bundle::open(&dir).expect("opens");
    assert_eq!((bundle.name(), bundle.version()), ("eta-madrid", 1));
    assert!(bundle.fallback().is_some());
    assert_eq!(bundle.samples().expect("samples").map(|s| s.len()), Some(1));
    assert_eq!(bundle.holdout().expect("holdout").map(|s| s.len()), Some(1));
    assert!(bundle.reference().expect("no reference is fine").is_none());
}
