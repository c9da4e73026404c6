//! Every fixture's verification samples come back from the server within the
//! contract's tolerance, in one batch and one row at a time.

use preflight_bundle::{Bundle, Manifest, Record, Repository, Tolerance};
use serde_json::Value;

use crate::{Server, fixtures, output};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_matches_its_samples() {
    let models = fixtures().join("models");
    let server = Server::start(&models).await;
    let repo = Repository::scan(&models).expect("scan");
    let mut checked = 0;
    for model in repo.models() {
        for version in &model.versions {
            let bundle = Bundle::open(&version.dir).expect("bundle");
            let manifest = bundle.manifest();
            let tolerance = manifest
                .contract
                .parity
                .expect("every fixture has a parity contract");
            let samples = bundle.samples().expect("samples").expect("samples present");
            let path = format!(
                "/v2/models/{}/versions/{}/infer",
                model.name, version.version
            );

            let rows: Vec<&Record> = samples.iter().collect();
            let (status, body) = server.post(&path, &manifest.infer_request(&rows)).await;
            assert_eq!(status, 200, "{path}: {body}");
            assert!(
                body.get("parameters").is_none(),
                "{path}: the main model answers: {body}"
            );
            assert_eq!(body["model_version"], version.version.to_string());
            let batch = served_rows(&body, manifest, samples.len());
            for (sample, served) in samples.iter().zip(&batch) {
                let expected = expected_row(sample);
                assert!(
                    agree(served, &expected, tolerance),
                    "{path} row '{}': served {served:?}, trained {expected:?}, tolerance \
                     {tolerance:?}",
                    sample.id
                );
            }

            for (sample, in_batch) in samples.iter().zip(&batch) {
                let (status, body) = server.post(&path, &manifest.infer_request(&[sample])).await;
                assert_eq!(status, 200, "{path} row '{}': {body}", sample.id);
                let alone = &served_rows(&body, manifest, 1)[0];
                // A linear model's product may take another kernel for a batch,
                // but its answers stay within the contract's tolerance.
                assert!(
                    agree(alone, in_batch, tolerance),
                    "{path} row '{}': {alone:?} alone, {in_batch:?} in a batch",
                    sample.id
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 21, "every bundle of fixtures/models");
}

/// Each row's served values, output by output: numbers, a classifier's
/// label as it travels, and its probabilities in class order.
fn served_rows(body: &Value, manifest: &Manifest, rows: usize) -> Vec<Vec<Value>> {
    let mut per_row = vec![Vec::new(); rows];
    for feature in &manifest.outputs {
        let outputs = body["outputs"].as_array().expect("outputs");
        let out = outputs
            .iter()
            .find(|o| o["name"] == feature.name.as_str())
            .unwrap_or_else(|| panic!("no output '{}' in {body}", feature.name));
        let mut flat = Vec::new();
        flatten(&out["data"], &mut flat);
        for (row, values) in per_row.iter_mut().zip(flat.chunks(feature.width())) {
            row.extend_from_slice(values);
        }
    }
    per_row
}

fn flatten(data: &Value, out: &mut Vec<Value>) {
    match data {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other.clone()),
    }
}

/// A sample's training-time outputs, flat as `served_rows` gives them.
fn expected_row(sample: &Record) -> Vec<Value> {
    let mut row = Vec::new();
    for value in sample.outputs.as_ref().expect("outputs") {
        match value.to_json() {
            Value::Array(items) => row.extend(items),
            other => row.push(other),
        }
    }
    row
}

/// Numbers within the tolerance, labels exactly.
fn agree(served: &[Value], expected: &[Value], tolerance: Tolerance) -> bool {
    served.len() == expected.len()
        && served.iter().zip(expected).all(|(s, e)| match (s, e) {
            (Value::String(_), _) | (_, Value::String(_)) => s == e,
            _ => match (s.as_f64(), e.as_f64()) {
                (Some(s), Some(e)) => tolerance.accepts(s, e),
                _ => false,
            },
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nulls_reach_the_model_as_nan() {
    let models = fixtures().join("models");
    let server = Server::start(&models).await;
    let bundle = Bundle::open(&models.join("eta-madrid/1")).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let (prep, _) = bundle
        .manifest()
        .input("prep_time_min")
        .expect("nullable input");
    let with_null: Vec<&Record> = samples
        .iter()
        .filter(|s| s.inputs[prep].is_null())
        .collect();
    assert!(with_null.len() >= 10, "the samples hold rows with a null");
    let (status, body) = server
        .post(
            "/v2/models/eta-madrid/versions/1/infer",
            &bundle.manifest().infer_request(&with_null),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let tolerance = bundle.manifest().contract.parity.expect("parity");
    for (sample, served) in with_null.iter().zip(output(&body, "eta_minutes")) {
        let expected = sample.outputs.as_ref().expect("outputs")[0]
            .as_f64()
            .expect("number");
        assert!(
            tolerance.accepts(served, expected),
            "row '{}': {served} vs {expected}",
            sample.id
        );
    }
}
