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
        "--max-inflight-rows",
        "--max-model-rows",
        "--run-slots",
        "--queue-wait-ms",
        "--max-connections",
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

/// With `--log-format json`, every line on standard error is JSON, from the
/// first, the error an exit gives included.
#[test]
fn a_json_log_is_json_from_its_first_line_to_its_last() {
    let out = Command::new(BIN)
        .args(["--log-format", "json", "--models", "/nonexistent/models"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.trim().is_empty());
    for line in stderr.lines() {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(parsed["level"], "ERROR", "{line}");
        let message = parsed["fields"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("--models /nonexistent/models: not a folder"),
            "{line}"
        );
    }
}

/// Sends SIGTERM to the server.
fn terminate(server: &Listening) {
    let pid = server.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.expect("kill").success());
}

/// Waits for the server to exit, for at most `limit`; its exit status.
fn exits_within(server: &mut Listening, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = server.child().try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "still running {limit:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start(extra: &[&str]) -> Listening {
    let models = fixtures().join("models").display().to_string();
    let mut args = vec!["--addr", "127.0.0.1:0", "--log-format", "json", "--models"];
    args.push(&models);
    args.extend(extra);
    let server = Listening::spawn(Path::new(BIN), &args).unwrap_or_else(|e| panic!("{e}"));
    server
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    server
}

/// On SIGTERM readiness turns 503 at once, requests are still answered for
/// the drain period, and then the process exits cleanly.
#[test]
fn on_sigterm_it_drains_then_stops() {
    let mut server = start(&["--drain-seconds", "5", "--shutdown-grace-seconds", "2"]);
    let addr = server.addr().to_owned();
    assert_eq!(status(&addr, "/v2/models/eta-milan/ready"), Some(200));

    terminate(&server);
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&addr, "/v2/health/ready") != Some(503) {
        assert!(
            Instant::now() < deadline,
            "readiness still 200 after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Draining: out of rotation, still serving.
    assert_eq!(status(&addr, "/v2/models/eta-milan/ready"), Some(200));
    let status = exits_within(&mut server, Duration::from_secs(30));
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

/// A client that never finishes its request does not keep the process
/// alive past the shutdown grace period.
#[test]
fn a_slow_client_does_not_outlast_the_grace_period() {
    let mut server = start(&["--drain-seconds", "0", "--shutdown-grace-seconds", "1"]);
    let mut slow = std::net::TcpStream::connect(server.addr()).expect("connect");
    let head = format!(
        "POST /v2/models/eta-milan/infer HTTP/1.1\r\nHost: {}\r\n\
        Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"inputs\"",
        server.addr()
    );
    std::io::Write::write_all(&mut slow, head.as_bytes()).expect("write");
    // The request is in flight once the server answers something else.
    assert_eq!(status(server.addr(), "/v2/health/live"), Some(200));
    terminate(&server);
    exits_within(&mut server, Duration::from_secs(30));
}

/// A connection that never finishes its request head is closed once the
/// header timeout is over, instead of being held open.
#[test]
fn a_partial_request_head_is_closed_after_the_header_timeout() {
    use std::io::{Read, Write};
    let server = start(&["--header-timeout-seconds", "1"]);
    let mut partial = std::net::TcpStream::connect(server.addr()).expect("connect");
    partial
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    partial
        .write_all(b"POST /v2/models/eta-milan/infer HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let mut answer = Vec::new();
    // Ends with the server closing the connection (with a 408 or without a
    // word), not with this side's read timeout.
    let read = partial.read_to_end(&mut answer);
    assert!(read.is_ok(), "still open: {read:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

/// Serves a valid and a malformed request 50 times each over one kept-alive
/// connection, with the log going to `stderr`; every answer must come, and
/// `/metrics` must count the lines lost.
fn serves_whatever_the_log(stderr: std::process::Stdio) {
    let models = fixtures().join("models");
    let mut command = Command::new(BIN);
    command
        .args(["--addr", "127.0.0.1:0", "--log", "debug", "--models"])
        .arg(&models)
        .stderr(stderr);
    let server = Listening::start(command).unwrap_or_else(|e| panic!("{e}"));
    server
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let bundle = preflight_bundle::Bundle::open(&models.join("eta-milan/1")).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let good = bundle.manifest().infer_request(&[&samples[0]]);
    let bad = serde_json::json!({"inputs": []});
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("{}/v2/models/eta-milan/infer", server.url);
        for _ in 0..50 {
            for (body, expected) in [(&good, 200), (&bad, 400)] {
                let response = client.post(&url).json(body).send().await;
                let status = response.expect("an answer").status().as_u16();
                assert_eq!(status, expected);
            }
        }
        // The log thread counts the lines it could not write as it goes.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let metrics = client.get(format!("{}/metrics", server.url)).send().await;
            let metrics = metrics.expect("metrics").text().await.expect("text");
            let lost = metrics
                .lines()
                .find_map(|l| {
                    l.strip_prefix("preflight_log_lines_dropped_total{reason=\"unwritable\"} ")
                })
                .and_then(|n| n.parse::<u64>().ok());
            if lost.is_some_and(|n| n >= 100) {
                break;
            }
            assert!(Instant::now() < deadline, "{metrics}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// A full disk under the log (`/dev/full` answers every write with ENOSPC).
#[test]
fn a_full_log_disk_leaves_every_request_served() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    serves_whatever_the_log(full.into());
}

/// A log collector that went away (every write fails with EPIPE).
#[test]
fn a_closed_log_pipe_leaves_every_request_served() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    serves_whatever_the_log(writer.into());
}

/// With standard output on a full disk too, the server starts and serves.
#[test]
fn a_full_disk_under_standard_output_and_error_is_not_a_crash() {
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full")
    };
    // The address cannot be printed: take a free port first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["--addr", &addr, "--models"])
        .arg(fixtures().join("models"))
        .stdout(full())
        .stderr(full())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&addr, "/v2/health/ready") != Some(200) {
        let exited = child.try_wait().expect("wait");
        assert_eq!(exited, None, "exited with a full disk under its output");
        assert!(Instant::now() < deadline, "not ready within a minute");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Beyond `--max-connections`, a connection waits until one closes: a flood
/// of connections costs a bounded amount of memory.
#[test]
fn a_connection_beyond_the_limit_waits_until_one_closes() {
    let server = start(&["--max-connections", "1", "--header-timeout-seconds", "60"]);
    // `start` polled readiness on connections of its own, now closed.
    let mut only = std::net::TcpStream::connect(server.addr()).expect("connect");
    std::io::Write::write_all(
        &mut only,
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .expect("write");
    let mut head = [0; 12];
    std::io::Read::read_exact(&mut only, &mut head).expect("the first connection is served");
    assert_eq!(&head, b"HTTP/1.1 200");
    // Kept alive, it holds the one place: the next is not even read.
    assert_eq!(status(server.addr(), "/v2/health/live"), None);
    drop(only);
    assert_eq!(status(server.addr(), "/v2/health/live"), Some(200));
}
