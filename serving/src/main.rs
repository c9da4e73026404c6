//! `preflight-serve`: serve a model repository over the Open Inference Protocol.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use preflight_serving::{
    AdmissionLimits, AppState, BodyLimits, MonitorLimits, OrtBackend, OrtOptions, RepositoryAccess,
    ServeConfig, VersionPolicy, find_library, init_ort,
};

mod lifecycle;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod malloc;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: malloc::Counted = malloc::Counted;

/// Serve every model of a model repository over the Open Inference Protocol
/// (KServe v2 REST, and gRPC with --grpc-addr), with ONNX Runtime for the
/// main models and the native fast fallback when a main model errors,
/// overruns its deadline or cannot be loaded.
///
/// Example:
///   preflight-serve --models fixtures/models --addr 127.0.0.1:8080
///   curl localhost:8080/v2/models/eta-madrid
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// The model repository: one folder per model, one numbered folder per version.
    #[arg(long, value_name = "DIR")]
    models: PathBuf,

    /// Address to listen on. Port 0 picks a free port; the address bound is
    /// printed on standard output as `listening on http://ADDR`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,

    /// Address to serve the protocol's gRPC service on, beside REST (KServe
    /// and Triton use port 8081 and 8001); off without it. The address
    /// bound is printed on standard output, after the REST one, as
    /// `listening on grpc://ADDR`.
    #[arg(long, value_name = "ADDR")]
    grpc_addr: Option<SocketAddr>,

    /// The ONNX Runtime shared library (libonnxruntime.so). Default: the
    /// ORT_DYLIB_PATH environment variable, else target/ort/ as fetched by
    /// `cargo xtask ort`.
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,

    /// Which versions of each model to load: every version, or the highest only.
    #[arg(long, value_enum, default_value_t = Policy::All)]
    version_policy: Policy,

    /// ONNX Runtime sessions per model version. Sessions run one batch at a
    /// time; more let one model use more cores at the cost of memory. The
    /// first is made at load, the others on demand when requests overlap.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    sessions_per_model: u16,

    /// Threads ONNX Runtime may use inside one batch.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    intra_op_threads: u16,

    /// Largest request body, in bytes; larger requests get 413.
    #[arg(long, default_value_t = BodyLimits::default().max_bytes)]
    max_body_bytes: usize,

    /// Seconds a connection has to send a whole request head, also from the
    /// end of its previous request: a connection that sends part of one, or
    /// idles kept alive, is closed after it.
    #[arg(long, default_value_t = 10)]
    header_timeout_seconds: u64,

    /// Connections open at once; more wait in the kernel's accept queue
    /// until one closes.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,

    /// Seconds a request's body may take to arrive once its head has; a
    /// slower one gets 408.
    #[arg(long, default_value_t = BodyLimits::default().timeout.as_secs())]
    body_timeout_seconds: u64,

    /// Seconds a request's body may pause between two of its pieces; a
    /// longer pause gets 408.
    #[arg(long, default_value_t = BodyLimits::default().idle.as_secs())]
    body_idle_seconds: u64,

    /// Most rows in one request; more get 400.
    #[arg(long, default_value_t = 100_000)]
    max_rows: usize,

    /// Rows decoded and not yet answered, server-wide; a request that
    /// cannot fit within --queue-wait-ms is shed with 503 and Retry-After.
    #[arg(long, default_value_t = AdmissionLimits::for_this_machine().max_inflight_rows)]
    max_inflight_rows: usize,

    /// Rows in flight for any one model version; a request beyond them is
    /// shed at once, so that one hot model leaves room for the others.
    #[arg(long, default_value_t = AdmissionLimits::for_this_machine().max_model_rows)]
    max_model_rows: usize,

    /// Batches that run on blocking threads at once (those too costly for
    /// the async workers). Default: one per core.
    #[arg(long, default_value_t = AdmissionLimits::for_this_machine().max_runs)]
    run_slots: usize,

    /// Milliseconds a request may wait for its rows and a run slot before it
    /// is shed with 503 and Retry-After.
    #[arg(long, default_value_t = preflight_serving::QUEUE_WAIT_MS)]
    queue_wait_ms: u64,

    /// Rows in each model version's monitoring windows: the drift of each
    /// input and output, and the live error, are over the last this many.
    #[arg(long, default_value_t = MonitorLimits::default().window)]
    monitor_window: usize,

    /// Predictions kept for feedback (POST /v2/models/{m}/feedback),
    /// server-wide; beyond it the oldest goes, and is counted.
    #[arg(long, default_value_t = MonitorLimits::default().pending)]
    feedback_pending: usize,

    /// Seconds a prediction waits for its feedback.
    #[arg(long, default_value_t = MonitorLimits::default().ttl.as_secs())]
    feedback_ttl_seconds: u64,

    /// Bearer token for the repository API (load, unload, index). Without
    /// one, the repository API is off, unless --open-repository-api.
    #[arg(long, env = "PREFLIGHT_REPOSITORY_TOKEN", hide_env_values = true)]
    repository_token: Option<String>,

    /// Open the repository API to anybody who can reach the server, without
    /// a token: for a trusted network only.
    #[arg(long, conflicts_with = "repository_token")]
    open_repository_api: bool,

    /// Threads that load models at start.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    load_threads: usize,

    /// Seconds between SIGTERM (or SIGINT) and the end of new work: readiness
    /// answers 503 at once, and requests are still served meanwhile, so that
    /// a load balancer takes the server out before it stops.
    #[arg(long, default_value_t = 5)]
    drain_seconds: u64,

    /// Seconds in-flight requests then have to finish before the process
    /// exits whatever its clients do.
    #[arg(long, default_value_t = 10)]
    shutdown_grace_seconds: u64,

    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log filter, as RUST_LOG: `debug` logs one line per request.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Policy {
    All,
    Latest,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    preflight_serving::heap::count_with(malloc::in_use);
    let cli = Cli::parse();
    let json = matches!(cli.log_format, LogFormat::Json);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Not through the log, which may not have started, but in its
            // format, so that a JSON log stays JSON; a closed stderr loses it.
            let line = if json {
                serde_json::json!({
                    "level": "ERROR",
                    "fields": {"message": format!("{error:#}")},
                    "target": "preflight_serve",
                })
                .to_string()
            } else {
                format!("error: {error:#}")
            };
            let _ = writeln!(std::io::stderr(), "{line}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .with_context(|| format!("--log '{}' is not a valid filter", cli.log))?;
    let logging = preflight_serving::Logging::init(
        match cli.log_format {
            LogFormat::Text => preflight_serving::LogFormat::Text,
            LogFormat::Json => preflight_serving::LogFormat::Json,
        },
        filter,
    );

    let library = find_library(cli.ort_lib.as_deref())?;
    init_ort(&library)?;
    let backend = OrtBackend::new(OrtOptions {
        sessions_per_model: cli.sessions_per_model.into(),
        intra_op_threads: cli.intra_op_threads.into(),
    });
    let config = serve_config(&cli);
    if !config.models.is_dir() {
        anyhow::bail!("--models {}: not a folder", config.models.display());
    }
    let mut state = AppState::new(&config, Arc::new(backend));
    state.log = Some(logging.dropped.clone());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(lifecycle::listen(&cli, &config, Arc::new(state)))
}

/// The server's configuration, from its flags.
fn serve_config(cli: &Cli) -> ServeConfig {
    ServeConfig {
        models: cli.models.clone(),
        version_policy: match cli.version_policy {
            Policy::All => VersionPolicy::All,
            Policy::Latest => VersionPolicy::Latest,
        },
        body: BodyLimits {
            max_bytes: cli.max_body_bytes,
            timeout: Duration::from_secs(cli.body_timeout_seconds),
            idle: Duration::from_secs(cli.body_idle_seconds),
        },
        max_rows: cli.max_rows,
        repository: match (&cli.repository_token, cli.open_repository_api) {
            (Some(token), _) if !token.is_empty() => RepositoryAccess::Token(token.clone()),
            (_, true) => RepositoryAccess::Open,
            (_, false) => RepositoryAccess::Off,
        },
        load_threads: cli.load_threads,
        admission: AdmissionLimits {
            max_inflight_rows: cli.max_inflight_rows,
            max_model_rows: cli.max_model_rows,
            max_runs: cli.run_slots,
            queue_wait: Duration::from_millis(cli.queue_wait_ms),
        },
        monitor: MonitorLimits {
            window: cli.monitor_window.max(1),
            pending: cli.feedback_pending.max(1),
            ttl: Duration::from_secs(cli.feedback_ttl_seconds),
            ..MonitorLimits::default()
        },
    }
}
