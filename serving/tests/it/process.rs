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
        "--body-timeout-seconds",
        "--body-idle-seconds",
        "--header-timeout-seconds",
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

/// Sends `bytes` on a new connection, then reads until the server closes
/// it (or `limit` passes): what came back, and when.
fn exchange(addr: &str, bytes: &[u8], limit: Duration) -> (String, Duration) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let started = Instant::now();
    // A peer that closes mid-send is an answer too: the read tells.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

/// One line of `/metrics`' `preflight_connections_closed_total`.
fn closed(addr: &str, reason: &str) -> u64 {
    let (text, _) = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    let prefix = format!("preflight_connections_closed_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
}

/// An inference request's head in `version`, then `rest`.
macro_rules! infer {
    ($version:literal, $rest:literal) => {
        concat!(
            "POST /v2/models/eta-milan/infer ",
            $version,
            "\r\nHost: x\r\n",
            $rest
        )
        .as_bytes()
    };
}

/// A body that never comes is answered 408 within `--body-idle-seconds`,
/// one that comes a byte a second, each on time, within
/// `--body-timeout-seconds`; both are counted.
#[test]
fn a_body_that_does_not_arrive_is_answered_408_within_the_bound() {
    use std::io::Write;
    let head = infer!("HTTP/1.1", "Content-Length: 100\r\n\r\n");
    let server = start(&["--body-idle-seconds", "1"]);
    let (answer, took) = exchange(server.addr(), head, Duration::from_secs(20));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("no byte of the request body arrived for 1 s"),
        "{answer}"
    );
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    assert_eq!(closed(server.addr(), "body_timeout"), 1);

    // Pauses of a second, well within the default idle bound of 10 s.
    let server = start(&["--body-timeout-seconds", "2"]);
    let mut trickle = std::net::TcpStream::connect(server.addr()).expect("connect");
    trickle.write_all(head).expect("head");
    let started = Instant::now();
    let writer = std::thread::spawn({
        let mut trickle = trickle.try_clone().expect("clone");
        move || {
            for _ in 0..20 {
                if trickle.write_all(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    });
    trickle
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut trickle, &mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 2 s"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let _ = writer.join();
    assert_eq!(closed(server.addr(), "body_timeout"), 1);
}

/// Python's urllib sends a whole body before it reads a byte of the answer.
const URLLIB_POST: &str = r#"
import sys, urllib.request, urllib.error
body = b'{"inputs": [' + b' ' * 3_000_000 + b']}'
headers = {"Content-Type": "application/json"}
request = urllib.request.Request(sys.argv[1], data=body, headers=headers)
try:
    urllib.request.urlopen(request, timeout=30)
    print("answered without an error")
except urllib.error.HTTPError as error:
    print(error.code, error.read().decode())
"#;

/// A body over the limit is refused with 413, and read and thrown away
/// meanwhile: a client that sends all of it before it reads, as most do
/// (Python's urllib, reqwest), gets the 413 and its message, not a broken
/// pipe.
#[test]
fn a_client_sending_a_body_over_the_limit_reads_its_413() {
    let server = start(&["--max-body-bytes", "100000"]);
    let url = format!("{}/v2/models/eta-milan/infer", server.url);
    let python = std::env::var("PREFLIGHT_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let urllib = Command::new(&python)
        .args(["-c", URLLIB_POST, &url])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} (cargo xtask test installs it): {e}"));
    let printed = String::from_utf8_lossy(&urllib.stdout);
    assert!(
        urllib.status.success(),
        "urllib: {printed}{}",
        String::from_utf8_lossy(&urllib.stderr)
    );
    assert!(
        printed.starts_with("413 ") && printed.contains("over this server's limit of 100000 bytes"),
        "urllib: {printed}"
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let body = format!("{{\"inputs\": [{}]}}", " ".repeat(3_000_000));
    let (status, text) = runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("an answer, not a broken pipe");
        let status = response.status().as_u16();
        (status, response.text().await.expect("the body"))
    });
    assert_eq!(status, 413, "{text}");
    assert!(
        text.contains("over this server's limit of 100000 bytes"),
        "{text}"
    );
    assert_eq!(closed(server.addr(), "body_too_large"), 2);
}

/// Requests that are not HTTP get the HTTP layer's 400 or 431 where it can
/// answer, and every one is counted by why.
#[test]
fn malformed_http_is_answered_and_counted() {
    let server = start(&[]);
    let addr = server.addr();
    let limit = Duration::from_secs(10);
    let mut tls = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    tls.extend([0; 300]);
    let mut large = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Large: ".to_vec();
    large.extend(std::iter::repeat_n(b'a', 1_000_000));
    large.extend(b"\r\n\r\n");
    let cases: [(&str, &[u8], &str); 6] = [
        ("a TLS handshake", &tls, "HTTP/1.1 400"),
        ("a bad method", b"G\0T / HTTP/1.1\r\n\r\n", "HTTP/1.1 400"),
        (
            "Content-Length: -1",
            infer!("HTTP/1.1", "Content-Length: -1\r\n\r\n"),
            "HTTP/1.1 400",
        ),
        ("a 1 MB header", &large, "HTTP/1.1 431"),
        (
            "an invalid chunk size",
            infer!("HTTP/1.1", "Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
            "HTTP/1.1 400",
        ),
        // No length in HTTP/1.0: an empty body, which is not a request.
        (
            "HTTP/1.0 without a length",
            infer!("HTTP/1.0", "\r\n"),
            "HTTP/1.0 400",
        ),
    ];
    for (what, bytes, status) in cases {
        let (answer, _) = exchange(addr, bytes, limit);
        assert!(answer.starts_with(status), "{what}: {answer:?}");
    }
    assert_eq!(closed(addr, "malformed_head"), 3);
    assert_eq!(closed(addr, "head_too_large"), 1);
    assert_eq!(closed(addr, "body_unreadable"), 1);
}

/// On SIGTERM, once the drain is over: a body still arriving is answered
/// 503, a partial request head is closed, a client that does not read its
/// answers is let go; a request already read is answered; and the process
/// exits well within its grace period.
#[test]
fn sigterm_is_not_held_by_slow_or_broken_clients() {
    use std::io::{Read, Write};
    let mut server = start(&["--drain-seconds", "1", "--shutdown-grace-seconds", "20"]);
    let addr = server.addr().to_owned();
    let connect = || std::net::TcpStream::connect(&addr).expect("connect");
    let mut trickle = connect();
    trickle
        .write_all(
            b"POST /v2/models/eta-milan/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
        )
        .expect("write");
    let mut partial = connect();
    partial
        .write_all(b"POST /v2/models/eta-milan/infer HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    // A client that sends batches and never reads what comes back.
    let bundle =
        preflight_bundle::Bundle::open(&fixtures().join("models/eta-milan/1")).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let rows: Vec<&preflight_bundle::Record> = samples.iter().take(250).collect();
    let body = bundle.manifest().infer_request(&rows).to_string();
    let request = format!(
        "POST /v2/models/eta-milan/infer HTTP/1.1\r\nHost: x\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let deaf = connect();
    deaf.set_nonblocking(true).expect("nonblocking");
    for _ in 0..200 {
        if (&deaf).write_all(request.as_bytes()).is_err() {
            break;
        }
    }
    terminate(&server);
    // Read during the drain, so answered whatever comes after.
    let (answered, _) = exchange(&addr, request.as_bytes(), Duration::from_secs(30));
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    trickle
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = trickle.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("the server is stopping"), "{answer}");
    let status = exits_within(&mut server, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    partial
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut rest = Vec::new();
    assert!(
        partial.read_to_end(&mut rest).is_ok(),
        "the partial head is closed"
    );
    drop(deaf);
}

/// The heap gauge is what the harness reads a model's memory from: it falls
/// when a model is unloaded and comes back when the model is loaded again.
/// Measured on a process of its own, since the gauge counts every
/// allocation of its process.
#[test]
fn the_heap_gauge_follows_an_unload_and_a_load() {
    let server = start(&["--open-repository-api"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = reqwest::Client::new();
    let heap = || {
        let (text, _) = exchange(
            server.addr(),
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(10),
        );
        let line = text
            .lines()
            .find(|l| l.starts_with("preflight_process_heap_bytes"))
            .unwrap_or_else(|| panic!("no heap gauge in:\n{text}"))
            .to_owned();
        let value = line.rsplit(' ').next().unwrap_or_default();
        value.parse::<f64>().expect("a number")
    };
    let post = |action: &str| {
        let url = format!("{}/v2/repository/models/eta-madrid/{action}", server.url);
        runtime.block_on(async {
            let response = client.post(&url).json(&serde_json::json!({})).send().await;
            response.expect("an answer").status().as_u16()
        })
    };
    let loaded = heap();
    assert_eq!(post("unload"), 200);
    let unloaded = heap();
    assert_eq!(post("load"), 200);
    let reloaded = heap();
    // Two versions of a 200-tree GBDT hold megabytes; the server's own
    // allocations between two readings, kilobytes.
    assert!(unloaded < loaded - 1e6, "{loaded} then {unloaded}");
    assert!(reloaded > unloaded + 1e6, "{unloaded} then {reloaded}");
}
