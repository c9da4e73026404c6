//! `--protocol grpc`: the suites' inference over the protocol's gRPC
//! service of the server the run starts. The clean fixtures pass over it,
//! and a broken bundle fails the same suites over gRPC as over REST.

use std::path::Path;

use serde_json::Value;

use crate::{fixtures, preflight, stderr};

/// The suites whose verdicts do not depend on the machine's load.
const SUITES: &str = "unit,parity,property,nullable,quality,fallback,observability,compat";

/// `preflight verify` of `models` (only `only`) over `protocol`, into `out`:
/// the exit code and the report.
fn verify(models: &Path, only: &str, protocol: &str, out: &Path) -> (Option<i32>, Value) {
    let run = preflight(&[
        "verify",
        "--models",
        &models.display().to_string(),
        "--target",
        "process",
        "--protocol",
        protocol,
        "--only",
        only,
        "--suites",
        SUITES,
        "--out",
        &out.display().to_string(),
    ]);
    let text = std::fs::read_to_string(out.join("report.json"))
        .unwrap_or_else(|e| panic!("no report.json ({e}): {}", stderr(&run)));
    let report = serde_json::from_str(&text).expect("report.json is JSON");
    (run.status.code(), report)
}

/// Each model's failed suites, as `model/version: suite, suite`.
fn failed(report: &Value) -> Vec<String> {
    let models = report["models"].as_array().expect("models");
    models
        .iter()
        .map(|m| {
            let suites = m["suites"].as_array().expect("suites").iter();
            let failed: Vec<&str> = suites
                .filter(|s| s["verdict"] == "failed")
                .map(|s| s["suite"].as_str().expect("name"))
                .collect();
            format!(
                "{}/{}: {}",
                m["name"].as_str().unwrap_or("?"),
                m["version"],
                failed.join(", ")
            )
        })
        .collect()
}

#[test]
fn the_fixtures_pass_over_grpc() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let models = fixtures().join("models");
    // A regressor of each learner, with two versions, and classifiers of two
    // and four classes; the wide frame's 115 inputs of every datatype.
    let only = "eta-madrid,eta-lisbon,late-madrid,vehicle-madrid,zone-demand";
    let (code, report) = verify(&models, only, "grpc", tmp.path());
    assert_eq!(code, Some(0), "{:?}", failed(&report));
    assert_eq!(report["protocol"], "gRPC");
    let target = report["target"].as_str().unwrap_or_default();
    assert_eq!(target, "process");
    assert_eq!(
        report["models"].as_array().map(Vec::len),
        Some(5),
        "every model verified"
    );
    let summary = std::fs::read_to_string(tmp.path().join("summary.md")).expect("summary.md");
    assert!(
        summary.contains("over gRPC"),
        "the summary says what was verified:\n{summary}"
    );
}

#[test]
fn a_broken_bundle_fails_the_same_suites_over_grpc_as_over_rest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // An export that drops the imputer, one that takes a batch of one row,
    // a classifier whose classes are swapped, and a stale fallback.
    for (defect, model) in [
        ("imputer-skipped", "eta-lisbon"),
        ("fixed-batch-export", "eta-lisbon"),
        ("class-order-swapped", "late-madrid"),
        ("fallback-stale", "eta-lisbon"),
    ] {
        let models = fixtures().join("defects/bundles").join(defect);
        let over = |protocol: &str| {
            let out = tmp.path().join(defect).join(protocol);
            let (code, report) = verify(&models, model, protocol, &out);
            (code, failed(&report))
        };
        let (rest, grpc) = (over("rest"), over("grpc"));
        assert_eq!(rest.0, Some(1), "{defect} over REST: {:?}", rest.1);
        assert_eq!(grpc, rest, "{defect}: over gRPC as over REST");
    }
}

/// `grpc://HOST:PORT`: an endpoint reached only over gRPC. Readiness and
/// metadata go through their gRPC calls, the suites of extensions only REST
/// reaches skip, and the rest pass.
#[test]
fn a_grpc_only_target_is_verified() {
    let models = fixtures().join("models");
    let binary = Path::new(crate::PREFLIGHT).with_file_name("preflight-serve");
    let args = [
        "--addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--models",
    ];
    let mut command = std::process::Command::new(binary);
    command
        .args(args)
        .arg(&models)
        .stderr(std::process::Stdio::null());
    let server = preflight_testkit::Listening::start(command).expect("preflight-serve starts");
    let grpc = server
        .grpc
        .clone()
        .expect("it says where its gRPC service is");
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = preflight(&[
        "verify",
        "--models",
        &models.display().to_string(),
        "--target",
        &format!("grpc://{grpc}"),
        "--only",
        "eta-madrid,late-madrid",
        "--suites",
        "unit,parity,property,nullable,quality,fallback,observability,compat",
        "--out",
        &tmp.path().display().to_string(),
    ]);
    let text = std::fs::read_to_string(tmp.path().join("report.json"))
        .unwrap_or_else(|e| panic!("no report.json ({e}): {}", stderr(&run)));
    let report: Value = serde_json::from_str(&text).expect("report.json is JSON");
    assert_eq!(run.status.code(), Some(0), "{:?}", failed(&report));
    assert_eq!(report["protocol"], "gRPC");
    assert_eq!(report["target"], format!("grpc://{grpc}"));
    let suite = |name: &str| {
        (report["models"][0]["suites"]
            .as_array()
            .expect("suites")
            .iter())
        .find(|s| s["suite"] == name)
        .unwrap_or_else(|| panic!("{name} did not run"))
    };
    let observability = suite("observability");
    assert_eq!(observability["verdict"], "skipped", "{observability}");
    let fallback = suite("fallback");
    assert_eq!(
        fallback["verdict"], "passed",
        "the fallback's parameters travel over gRPC"
    );
}
