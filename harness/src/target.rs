//! Targets: where the endpoint under test comes from. Every wait is bounded.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::container::{Container, Limits, Reached};
use crate::suites::MemoryProbe;

/// How long a container's memory reading is reused.
const MEMORY_READING_REUSE: Duration = Duration::from_secs(5);

/// A memory reading of the container: when, and the bytes (`None` when the
/// engine could not tell).
type Reading = (Instant, Option<u64>);

/// How long a started server may take to load its repository.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// `--target` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// Any Open Inference Protocol server, already running.
    Url(String),
    /// `preflight-serve` started on the repository for this run.
    Process,
    /// The serving image, run by the local Docker engine (never pulled).
    Container(String),
    /// Any server of the protocol's gRPC half, already running, `HOST:PORT`:
    /// everything over gRPC, REST not at all.
    Grpc(String),
}

impl TargetSpec {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(addr) = text.strip_prefix("grpc://") {
            let addr = addr.trim_end_matches('/');
            return match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(Self::Grpc(addr.to_owned()))
                }
                _ => Err(format!("--target {text}: expected grpc://HOST:PORT")),
            };
        }
        match text.split_once('=') {
            Some(("url", url)) if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(Self::Url(url.trim_end_matches('/').to_owned()))
            }
            Some(("url", url)) => Err(format!(
                "--target url={url}: the URL must start with http:// or https://"
            )),
            None if text == "process" => Ok(Self::Process),
            Some(("container", image)) if !image.is_empty() => {
                Ok(Self::Container(image.to_owned()))
            }
            _ => {
                let kind = text.split_once('=').map_or(text, |(kind, _)| kind);
                let hint = ["url", "process", "container"]
                    .into_iter()
                    .find(|known| strsim::levenshtein(kind, known) <= 2)
                    .map(|known| format!("; did you mean '{known}'?"))
                    .unwrap_or_default();
                Err(format!(
                    "--target {text}: expected url=http://HOST:PORT, grpc://HOST:PORT, process \
                     or container=IMAGE{hint}"
                ))
            }
        }
    }

    /// `process`, `container`, `url` or `grpc`: what `Report::target_kind`
    /// reads back from [`Self::describe`].
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Url(_) => "url",
            Self::Process => "process",
            Self::Container(_) => "container",
            Self::Grpc(_) => "grpc",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Url(url) => format!("url={url}"),
            Self::Process => "process".to_owned(),
            Self::Container(image) => format!("container={image}"),
            Self::Grpc(addr) => format!("grpc://{addr}"),
        }
    }

    /// What the suites' inference goes over: a `grpc://` target's is
    /// gRPC whatever `--protocol` says.
    pub fn protocol(&self, options: &TargetOptions) -> Protocol {
        match self {
            Self::Grpc(_) => Protocol::Grpc,
            _ => options.protocol,
        }
    }
}

/// A running endpoint, stopped when dropped.
pub struct Endpoint {
    pub client: Client,
    pub memory: Option<MemoryProbe>,
    /// Resident memory right after the endpoint became ready.
    pub memory_after_load: Option<u64>,
    /// The image's size, for a container target.
    pub image_bytes: Option<u64>,
    /// Where the server's log is (or will be, once `finish` has run).
    pub log: Option<PathBuf>,
    child: Option<Child>,
    container: Option<Container>,
}

impl Endpoint {
    /// Where the endpoint is, for a container how it is reached, and where
    /// inference goes over gRPC.
    pub fn describe(&self) -> String {
        let base = &self.client.base;
        let at = match self.container.as_ref().map(|c| c.reached) {
            Some(Reached::Directly) => format!("{base}, the container's own address"),
            Some(Reached::Published) => format!("{base}, the container's published port"),
            None => base.clone(),
        };
        match self.client.grpc_addr() {
            Some(grpc) => format!("{at}; inference over gRPC at {grpc}"),
            None => at,
        }
    }
}

/// How targets are started; the defaults are production-like.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// `preflight-serve` for the process target.
    pub serve_bin: Option<PathBuf>,
    /// The ONNX Runtime library the process target is given.
    pub ort_lib: Option<PathBuf>,
    /// How long a `url=` target may take to say it is ready.
    pub ready_timeout: Duration,
    /// CPU and memory of a container target.
    pub limits: Limits,
    /// The repository API token of a `url=` target, for the suites that
    /// change what it serves (rollout); a process or container target gets
    /// one of its own.
    pub repository_token: Option<String>,
    /// What inference goes over.
    pub protocol: Protocol,
    /// The gRPC service of a `url=` target, `HOST:PORT`, for
    /// `--protocol grpc`; a process target serves its own.
    pub grpc_addr: Option<String>,
}

/// What the suites' inference goes over: REST, or the protocol's gRPC
/// service, with health, metadata and Preflight's extensions on REST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Rest,
    Grpc,
}

impl Protocol {
    /// `REST` or `gRPC`, as the reports say.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rest => "REST",
            Protocol::Grpc => "gRPC",
        }
    }
}

impl Default for TargetOptions {
    fn default() -> Self {
        Self {
            serve_bin: None,
            ort_lib: None,
            ready_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            repository_token: None,
            protocol: Protocol::Rest,
            grpc_addr: None,
        }
    }
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
    pub async fn start(
        spec: &TargetSpec,
        models: &Path,
        out: &Path,
        options: &TargetOptions,
    ) -> Result<Self, String> {
        match spec {
            TargetSpec::Url(url) => {
                let mut client = match &options.repository_token {
                    Some(token) => Client::new(url).with_repository_token(token),
                    None => Client::new(url),
                };
                if options.protocol == Protocol::Grpc {
                    let addr = (options.grpc_addr.as_deref()).ok_or(
                        "--protocol grpc with a url= target needs --grpc-addr HOST:PORT, where \
                         its gRPC service listens",
                    )?;
                    client = client.with_grpc(addr)?;
                }
                wait_ready(&client, options.ready_timeout, None).await?;
                Ok(Self::bare(client))
            }
            TargetSpec::Grpc(addr) => {
                let client = Client::grpc_only(addr)?;
                wait_ready(&client, options.ready_timeout, None).await?;
                Ok(Self::bare(client))
            }
            TargetSpec::Process => start_process(models, out, options).await,
            TargetSpec::Container(image) => start_container(image, models, out, options).await,
        }
    }

    /// Whether this run started the endpoint, and so may unload and load
    /// its models to measure them.
    pub fn owned(&self) -> bool {
        self.child.is_some() || self.container.is_some()
    }

    fn bare(client: Client) -> Self {
        Self {
            client,
            memory: None,
            memory_after_load: None,
            image_bytes: None,
            log: None,
            child: None,
            container: None,
        }
    }

    /// Stops the endpoint the harness started, keeping its log; returns where the log is.
    pub async fn finish(mut self) -> Option<PathBuf> {
        if let (Some(container), Some(log)) = (self.container.take(), &self.log) {
            if let Err(e) = container.save_log(log).await {
                eprintln!("preflight: cannot keep the container's log: {e}");
            }
            container.remove().await;
        }
        self.log.clone()
    }
}

/// The serving image in a container, ready; its log goes to `out/container.log` at the end.
async fn start_container(
    image: &str,
    models: &Path,
    out: &Path,
    options: &TargetOptions,
) -> Result<Endpoint, String> {
    let log = out.join("container.log");
    let token = fresh_token();
    let container = crate::container::start(image, models, options.limits, &log, &token).await?;
    let mut client = Client::new(&container.url).with_repository_token(&token);
    if options.protocol == Protocol::Grpc {
        client = client.with_grpc(&container.grpc)?;
    }
    let ready = crate::container::wait(&container, READY_TIMEOUT, || async {
        loaded(&client).await.is_ok()
    })
    .await;
    if let Err(e) = ready {
        let _ = container.save_log(&log).await;
        container.remove().await;
        return Err(format!("{image}: {e}; its log: {}", log.display()));
    }
    let id = container.id().to_owned();
    let memory_after_load = crate::container::memory_of(&id).await;
    // The size suite reads memory from synchronous code on the multi-thread runtime.
    // The engine's stats take about a second to sample, and the size suite
    // asks once per model: a reading is reused for a few seconds, so that a
    // fleet's size suites do not take a second each.
    let last: Arc<std::sync::Mutex<Option<Reading>>> = Arc::default();
    let memory: MemoryProbe = Arc::new(move || {
        let mut last = last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, bytes)) = *last
            && at.elapsed() < MEMORY_READING_REUSE
        {
            return bytes;
        }
        let handle = tokio::runtime::Handle::current();
        let bytes =
            tokio::task::block_in_place(|| handle.block_on(crate::container::memory_of(&id)));
        *last = Some((Instant::now(), bytes));
        bytes
    });
    let mut endpoint = Endpoint::bare(client);
    endpoint.image_bytes = container.image_bytes;
    endpoint.memory = Some(memory);
    endpoint.memory_after_load = memory_after_load;
    endpoint.log = Some(log);
    endpoint.container = Some(container);
    Ok(endpoint)
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

async fn start_process(
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
        (Protocol::Grpc, Some(grpc)) => client.with_grpc(&grpc),
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

/// The environment variable that gives `preflight-serve` its repository token.
pub(crate) const REPOSITORY_TOKEN: &str = "PREFLIGHT_REPOSITORY_TOKEN";

/// A token for the repository API of a server this run starts: its API is
/// then the run's alone (the size suite unloads and loads through it), and
/// nobody else's who can reach the port. From the standard library's
/// randomly keyed hasher: unguessable enough for one run's lifetime.
fn fresh_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let word = || {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    format!("{:016x}{:016x}", word(), word())
}

/// Whether the endpoint has loaded what it serves: readiness answers 200,
/// or, from preflight-serve, 503 with `"loading": false`: loaded, with some
/// version not ready, which the suites of that model then show.
/// Whether the endpoint has finished loading, or what it said instead.
async fn loaded(client: &Client) -> Result<(), String> {
    match client.get_text("/v2/health/ready").await {
        Ok((200, _)) => Ok(()),
        Ok((503, body)) => {
            let json = serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default();
            if json["loading"] == serde_json::Value::Bool(false) {
                Ok(())
            } else {
                Err("it answers 503, not ready yet".to_owned())
            }
        }
        Ok((404, _)) => Err(
            "it answers 404 for /v2/health/ready: something listens there, \
             but not an Open Inference Protocol server"
                .to_owned(),
        ),
        Ok((status, _)) => Err(format!("it answers {status}")),
        Err(unreachable) => Err(unreachable.reason),
    }
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
        let last = match tokio::time::timeout(remaining, loaded(client)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(seen)) => seen,
            Err(_) => format!(
                "it accepts connections but did not answer within {:.0} s",
                remaining.as_secs_f64()
            ),
        };
        if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            return Err(format!(
                "preflight-serve exited with {status} before it was ready"
            ));
        }
        if started.elapsed() > limit {
            return Err(format!(
                "{} was not ready within {} s (GET /v2/health/ready): {last}",
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
