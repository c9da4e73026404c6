//! Every fixture's verification samples come back from the server within the
//! contract's tolerance, in one batch and one row at a time.

use preflight_bundle::{Bundle, Record, Repository};

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
            let name = &manifest.outputs[0].name;
            let batch = output(&body, name);
            assert_eq!(batch.len(), samples.len());
            for (sample, &served) in samples.iter().zip(&batch) {
                let expected = sample.outputs.as_ref().expect("outputs")[0]
                    .as_f64()
                    .expect("number");
                assert!(
                    tolerance.accepts(served, expected),
                    "{path} row '{}': served {served}, trained {expected}, tolerance {tolerance:?}",
                    sample.id
                );
            }

            for (sample, &in_batch) in samples.iter().zip(&batch) {
                let (status, body) = server.post(&path, &manifest.infer_request(&[sample])).await;
                assert_eq!(status, 200, "{path} row '{}': {body}", sample.id);
                let alone = output(&body, name)[0];
                // A linear model's product may take another kernel for a batch,
                // but its answers stay within the contract's tolerance.
                assert!(
                    tolerance.accepts(alone, in_batch),
                    "{path} row '{}': {alone} alone, {in_batch} in a batch",
                    sample.id
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 13, "every bundle of fixtures/models");
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
