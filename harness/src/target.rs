//! Targets: where the endpoint under test comes from. Every wait is bounded.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::suites::MemoryProbe;

/// How long a started server may take to load its repository.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// `--target` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// Any Open Inference Protocol server, already running.
    Url(String),
    /// `preflight-serve` started on the repository for this run.
    Process,
}

impl TargetSpec {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.split_once('=') {
            Some(("url", url)) if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(Self::Url(url.trim_end_matches('/').to_owned()))
            }
            Some(("url", url)) => Err(format!(
                "--target url={url}: the URL must start with http:// or https://"
            )),
            None if text == "process" => Ok(Self::Process),
            _ => Err(format!(
                "--target {text}: expected url=http://HOST:PORT or process"
            )),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Url(url) => format!("url={url}"),
            Self::Process => "process".to_owned(),
        }
    }
}

/// A running endpoint, stopped when dropped.
pub struct Endpoint {
    pub client: Client,
    pub memory: Option<MemoryProbe>,
    /// Resident memory right after the endpoint became ready.
    pub memory_after_load: Option<u64>,
    child: Option<Child>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.client.base)
            .field("process", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Endpoint {
    /// Connects to or starts the target; the error says what happened and
    /// where the server's log is.
    /// A `url=` target has `ready_timeout` to say it is ready.
    pub async fn start(
        spec: &TargetSpec,
        models: &Path,
        out: &Path,
        serve_bin: Option<&Path>,
        ready_timeout: Duration,
    ) -> Result<Self, String> {
        match spec {
            TargetSpec::Url(url) => {
                let client = Client::new(url);
                wait_ready(&client, ready_timeout, None).await?;
                Ok(Self {
                    client,
                    memory: None,
                    memory_after_load: None,
                    child: None,
                })
            }
            TargetSpec::Process => start_process(models, out, serve_bin).await,
        }
    }
}

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
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!("preflight-serve was not found (looked at {}); build it with `cargo build -p preflight-serving` or pass --serve-bin", candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))
    })
}

async fn start_process(
    models: &Path,
    out: &Path,
    serve_bin: Option<&Path>,
) -> Result<Endpoint, String> {
    let binary = serve_binary(serve_bin)?;
    let log_path = out.join("preflight-serve.log");
    let log = File::create(&log_path)
        .map_err(|e| format!("{}: cannot create the server log: {e}", log_path.display()))?;
    let mut child = Command::new(&binary)
        .args(["--addr", "127.0.0.1:0", "--log-format", "json", "--models"])
        .arg(models)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: cannot start: {e}", binary.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    // The first line is `listening on http://ADDR`; read it off the async workers.
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = match tokio::time::timeout(Duration::from_secs(30), first).await {
        Ok(Ok(Ok(line))) => line,
        _ => {
            let _ = child.kill();
            return Err(format!(
                "preflight-serve did not start listening within 30 s; its log: {}",
                log_path.display()
            ));
        }
    };
    let Some(url) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "preflight-serve exited at start; its log: {}",
            log_path.display()
        ));
    };
    let pid = child.id();
    let memory: MemoryProbe = Arc::new(move || resident_bytes(pid));
    let mut endpoint = Endpoint {
        client: Client::new(url),
        memory: Some(memory),
        memory_after_load: None,
        child: Some(child),
    };
    let waited = wait_ready(&endpoint.client, READY_TIMEOUT, endpoint.child.as_mut()).await;
    waited.map_err(|e| format!("{e}; its log: {}", log_path.display()))?;
    endpoint.memory_after_load = resident_bytes(pid);
    Ok(endpoint)
}

async fn wait_ready(
    client: &Client,
    limit: Duration,
    mut child: Option<&mut Child>,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        // A server that accepts and never answers must not outlast the limit.
        let remaining = limit
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        if let Ok(Ok(200)) =
            tokio::time::timeout(remaining, client.status("/v2/health/ready")).await
        {
            return Ok(());
        }
        if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            return Err(format!(
                "preflight-serve exited with {status} before it was ready"
            ));
        }
        if started.elapsed() > limit {
            return Err(format!(
                "{} was not ready within {} s (GET /v2/health/ready)",
                client.base,
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
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
