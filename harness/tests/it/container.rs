//! `--target container=IMAGE` against the real Docker engine: a passing run,
//! and every way a container can fail, each ending with exit code 3, a
//! message, the container's log, and no container left behind.
//!
//! Gated, not ignored: `cargo xtask test` builds the image and sets
//! PREFLIGHT_IMAGE; PREFLIGHT_SKIP_CONTAINER_TESTS=1 skips these on a machine
//! without Docker.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::{PREFLIGHT, fixtures, preflight, stderr};

fn image() -> Option<String> {
    if std::env::var("PREFLIGHT_SKIP_CONTAINER_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("container tests skipped: PREFLIGHT_SKIP_CONTAINER_TESTS=1");
        return None;
    }
    let answers = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        answers,
        "no Docker engine answers: the container tests need one (set \
            PREFLIGHT_SKIP_CONTAINER_TESTS=1 to skip them)"
    );
    Some(std::env::var("PREFLIGHT_IMAGE").unwrap_or_else(|_| "preflight-serve:dev".to_owned()))
}

/// Containers the harness started that still exist, running or not.
fn leftovers() -> String {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=preflight.harness=1"])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

// One test, so that the leftover checks never see another test's container.
#[test]
fn container_target() {
    let Some(image) = image() else { return };
    let models = fixtures().join("models").display().to_string();
    let target = format!("container={image}");
    let tmp = tempfile::tempdir().expect("tempdir");

    // Passing: the served image, with its size and memory in the report.
    let out_dir = tmp.path().join("pass");
    let out = preflight(&[
        "verify",
        "--models",
        &models,
        "--target",
        &target,
        "--only",
        "eta-nairobi",
        "--suites",
        "unit,parity,size",
        "--out",
        &out_dir.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("report.json")).expect("report"),
    )
    .expect("json");
    let size = report["models"][0]["suites"]
        .as_array()
        .expect("suites")
        .iter()
        .find(|s| s["suite"] == "size")
        .expect("size")
        .clone();
    let image_bytes = size["metrics"]["image_bytes"]
        .as_f64()
        .expect("image_bytes");
    assert!(
        image_bytes > 1e6 && image_bytes < 60e6,
        "the image is under 60 MB: {image_bytes}"
    );
    assert!(
        size["metrics"]["endpoint_resident_bytes_after_load"]
            .as_f64()
            .expect("memory")
            > 1e6,
        "{size}"
    );
    assert!(
        std::fs::read_to_string(out_dir.join("container.log"))
            .expect("container.log")
            .contains("listening on")
    );
    assert_eq!(leftovers(), "", "no container is left after a run");

    // The same over the image's gRPC service.
    let out_dir = tmp.path().join("grpc");
    let out = preflight(&[
        "verify",
        "--models",
        &models,
        "--target",
        &target,
        "--protocol",
        "grpc",
        "--only",
        "eta-nairobi",
        "--suites",
        "unit,parity,nullable",
        "--out",
        &out_dir.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = std::fs::read_to_string(out_dir.join("report.json")).expect("report");
    assert!(report.contains(r#""protocol": "gRPC""#), "{report}");
    assert_eq!(
        leftovers(),
        "",
        "no container is left after a run over gRPC"
    );

    // An image that does not exist: nothing is pulled.
    let out = preflight(&[
        "verify",
        "--models",
        &models,
        "--target",
        "container=preflight-serve:no-such-tag",
        "--out",
        &tmp.path().join("missing").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not on this machine")
            && stderr(&out).contains("cargo xtask image"),
        "{}",
        stderr(&out)
    );

    // A container that exits at start: 32 MiB cannot hold the fixtures'
    // models, and the engine kills it. (Far less, such as Docker's least of
    // 6 MiB, cannot hold the server's own code either: it pages its code in
    // and out for minutes rather than being killed.)
    let out_dir = tmp.path().join("exits");
    let out = preflight(&[
        "verify",
        "--models",
        &models,
        "--target",
        &target,
        "--memory-mib",
        "32",
        "--out",
        &out_dir.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("container.log"),
        "the message says where the log is: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("killed it for lack of memory, over its limit of 32 MiB"),
        "the message says why it exited: {}",
        stderr(&out)
    );
    assert!(out_dir.join("container.log").is_file());
    assert_eq!(leftovers(), "", "no container is left after a failed start");

    // A container killed in the middle of a suite.
    let out_dir = tmp.path().join("killed");
    let child = Command::new(PREFLIGHT)
        .args([
            "verify",
            "--models",
            &models,
            "--target",
            &target,
            "--only",
            "eta-madrid",
            "--suites",
            "latency",
            "--out",
            &out_dir.display().to_string(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start preflight");
    let started = Instant::now();
    let id = loop {
        let id = leftovers();
        if !id.is_empty() {
            break id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no container started"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        Command::new("docker")
            .args(["kill", &id])
            .output()
            .expect("docker kill")
            .status
            .success()
    );
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("container.log"),
        "the message says where the log is: {}",
        stderr(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(120));
    assert_eq!(leftovers(), "", "no container is left after a failed run");
}
