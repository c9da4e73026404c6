//! The `preflight-serve` binary: its flags, its start-up line, its shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let mut child = Command::new(BIN)
        .args(["--addr", "127.0.0.1:0", "--log-format", "json", "--models"])
        .arg(fixtures().join("models"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start preflight-serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    let addr = url.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    while status(&addr, "/v2/health/ready") != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not ready within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status(&addr, "/v2/models/eta-milan/ready"), Some(200));

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
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

/// The status of a plain HTTP/1.1 GET, or `None` where nothing answers.
fn status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}
