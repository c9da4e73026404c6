//! The `process` target: `preflight-serve` started on the repository, its
//! log kept, its resident memory read from `/proc`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::{
    Endpoint, Protocol, READY_TIMEOUT, REPOSITORY_TOKEN, TargetOptions, fresh_token, wait_ready,
};
use crate::client::Client;
use crate::suites::MemoryProbe;

/// `preflight-serve`: `--serve-bin`, else `PREFLIGHT_SERVE`, else beside this executable.
fn serve_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("PREFLIGHT_SERVE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("preflight-serve"))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            format!(
                "preflight-serve was not found (looked at {}); build it with \
            `cargo build -p preflight-serving` or pass --serve-bin",
                looked.join(", ")
            )
        })
}

pub(super) async fn start_process(
    models: &Path,
    out: &Path,
    options: &TargetOptions,
) -> Result<Endpoint, String> {
    let binary = serve_binary(options.serve_bin.as_deref())?;
    let log_path = out.join("preflight-serve.log");
    let log = File::create(&log_path)
        .map_err(|e| format!("{}: cannot create the server log: {e}", log_path.display()))?;
    let token = fresh_token();
    let mut command = Command::new(&binary);
    command
        .args(["--addr", "127.0.0.1:0", "--log-format", "json", "--models"])
        .arg(models);
    if options.protocol == Protocol::Grpc {
        command.args(["--grpc-addr", "127.0.0.1:0"]);
    }
    if let Some(library) = &options.ort_lib {
        command.arg("--ort-lib").arg(library);
    }
    let mut child = command
        .env(REPOSITORY_TOKEN, &token)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: cannot start: {e}", binary.display()))?;
    let client = match client_of(&mut child, &token, options.protocol, &log_path).await {
        Ok(client) => client,
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(why);
        }
    };
    let pid = child.id();
    let memory: MemoryProbe = Arc::new(move || resident_bytes(pid));
    let mut endpoint = Endpoint::bare(client);
    endpoint.memory = Some(memory);
    endpoint.log = Some(log_path.clone());
    endpoint.child = Some(child);
    let waited = wait_ready(&endpoint.client, READY_TIMEOUT, endpoint.child.as_mut()).await;
    waited.map_err(|e| format!("{e}; its log: {}", log_path.display()))?;
    endpoint.memory_after_load = resident_bytes(pid);
    Ok(endpoint)
}

/// The client of a started `preflight-serve`, from where it says it
/// listens; or why there is none, with where its `log` is.
async fn client_of(
    child: &mut Child,
    token: &str,
    protocol: Protocol,
    log: &Path,
) -> Result<Client, String> {
    let at = log.display();
    let (url, grpc) = match listening(child).await {
        Ok(Listening::Said { url, grpc }) => (url, grpc),
        Ok(Listening::Exited) => {
            let last = last_lines(log);
            return Err(format!(
                "preflight-serve exited at start{last}; its log: {at}"
            ));
        }
        Err(why) => return Err(format!("{why}; its log: {at}")),
    };
    let client = Client::new(&url).with_repository_token(token);
    match (protocol, grpc) {
        (Protocol::Rest, _) => Ok(client),
        (Protocol::Grpc, Some(grpc)) => client.with_grpc(&grpc).map_err(|e| e.to_string()),
        (Protocol::Grpc, None) => Err(format!(
            "preflight-serve did not say where its gRPC service listens; its log: {at}"
        )),
    }
}

/// What a started `preflight-serve` said on standard output.
enum Listening {
    /// Where it listens: REST's `http://ADDR`, and its gRPC service's
    /// `ADDR` where it serves one.
    Said { url: String, grpc: Option<String> },
    /// Nothing: it exited.
    Exited,
}

/// Reads where `child` listens: `listening on http://ADDR` first, and with
/// `--grpc-addr` `listening on grpc://ADDR`, which comes in the same write;
/// off the async workers, within 30 s.
async fn listening(child: &mut Child) -> Result<Listening, String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let read = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line)?;
        let rest = String::from_utf8_lossy(reader.buffer()).into_owned();
        std::io::Result::Ok((line, rest))
    });
    let Ok(Ok(Ok((line, rest)))) = tokio::time::timeout(Duration::from_secs(30), read).await else {
        return Err("preflight-serve did not start listening within 30 s".to_owned());
    };
    let Some(url) = line.trim().strip_prefix("listening on ") else {
        return Ok(Listening::Exited);
    };
    let grpc = (rest.lines().next())
        .and_then(|l| l.trim().strip_prefix("listening on grpc://"))
        .map(str::to_owned);
    Ok(Listening::Said {
        url: url.to_owned(),
        grpc,
    })
}

/// The end of a log, as `: <line> / <line>`, for an error that would
/// otherwise only point at the file.
fn last_lines(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(readable)
        .collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {}", tail.join(" / "))
    }
}

/// A line of the server's JSON log as a person reads it, `error: <message>`;
/// any other line as it is.
fn readable(line: &str) -> String {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.to_owned();
    };
    match (json["level"].as_str(), json["fields"]["message"].as_str()) {
        (Some(level), Some(message)) => format!("{}: {message}", level.to_lowercase()),
        _ => line.to_owned(),
    }
}

/// A process's resident memory, from /proc (Linux).
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
