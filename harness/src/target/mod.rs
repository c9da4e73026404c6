//! Targets: where the endpoint under test comes from. Every wait is bounded.

mod container;
mod process;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use self::container::start_container;
use self::process::start_process;
use crate::client::Client;
use crate::container::{Container, Limits, Reached};
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
                    client = client.with_grpc(addr).map_err(|e| e.to_string())?;
                }
                wait_ready(&client, options.ready_timeout, None).await?;
                Ok(Self::bare(client))
            }
            TargetSpec::Grpc(addr) => {
                let client = Client::grpc_only(addr).map_err(|e| e.to_string())?;
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
