//! The `preflight-serve` binary: its flags, its start-up line, its shutdown.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use preflight_testkit::{Listening, status};

use crate::fixtures;

const BIN: &str = env!("CARGO_BIN_EXE_preflight-serve");

#[test]
fn help_explains_every_flag_with_an_example() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--models",
        "--addr",
        "--ort-lib",
        "--version-policy",
        "--sessions-per-model",
        "--intra-op-threads",
        "--max-body-bytes",
        "--max-rows",
        "--repository-token",
        "--load-threads",
        "--log-format",
        "--log",
        "Example:",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

#[test]
fn a_missing_library_or_repository_is_a_clear_error() {
    let out = Command::new(BIN)
        .args([
            "--models",
            "fixtures/models",
            "--ort-lib",
            "/nonexistent/libonnxruntime.so",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so: cannot load ONNX Runtime")
            && stderr.contains("cargo xtask ort"),
        "{stderr}"
    );

    let out = Command::new(BIN)
        .args(["--models", "/nonexistent/models"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--models /nonexistent/models: not a folder")
    );
}

#[test]
fn serves_then_stops_gracefully_on_sigterm() {
    let models = fixtures().join("models").display().to_string();
    let mut args = vec!["--addr", "127.0.0.1:0", "--log-format", "json", "--models"];
    args.push(&models);
    let mut server = Listening::spawn(Path::new(BIN), &args).unwrap_or_else(|e| panic!("{e}"));
    server
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = server.addr().to_owned();
    assert_eq!(status(&addr, "/v2/models/eta-milan/ready"), Some(200));

    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.child().try_wait().expect("wait") {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
