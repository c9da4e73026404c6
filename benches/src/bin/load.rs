//! An open-loop load generator for an Open Inference Protocol endpoint.
//!
//! Requests leave at a constant rate whatever the server does, and each is
//! timed from its *intended* send time, so a stalled server shows up in the
//! percentiles instead of slowing the load down (no coordinated omission).
//!
//!   load --url http://127.0.0.1:8080 --bundle fixtures/models/eta-madrid/1 --rate 1000 --seconds 5
//!
//! Answers are counted by kind: 200, shed (503 with `Retry-After`), and
//! anything else; the percentiles are of the 200s, then of all answers.
//! `--json` prints the figures as one JSON object, for `cargo xtask bench`.
//!
//! With `--grpc` the same requests go to the protocol's gRPC service at
//! `--url` (`http://HOST:PORT`), made from the same JSON bodies before the
//! clock starts (`preflight_grpc::request_from_json`); a call answered OK
//! counts as a 200, one answered `UNAVAILABLE` with a retry pushback as shed.
//! A closed loop gives each of its loops a connection of its own, as over
//! HTTP/1.1; the open loop multiplexes its calls over `GRPC_CHANNELS`
//! connections, as a gRPC client does.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;

#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    /// The endpoint, such as http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// A bundle folder (`<model>/<version>`): its samples are the requests.
    #[arg(long, required_unless_present = "bodies")]
    bundle: Option<PathBuf>,
    /// Request bodies instead, one JSON per line, sent to `--path`: for a
    /// server that takes other requests than the bundle's (a peer's).
    #[arg(long, requires = "path", conflicts_with = "bundle")]
    bodies: Option<PathBuf>,
    /// The URL path of `--bodies`' requests, such as `/v2/models/m/infer`.
    #[arg(long)]
    path: Option<String>,
    /// Requests per second, sent open-loop: each timed from when it was
    /// due, so a server that falls behind shows in the latency.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Closed loop instead: this many connections, each sending its next
    /// request when its last is answered; the highest rate the server and
    /// the generator sustain together.
    #[arg(long, conflicts_with = "rate")]
    connections: Option<usize>,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Rows per request, the bundle's samples over and over.
    #[arg(long, default_value_t = 1)]
    rows: usize,
    /// Send request `i` to model `unknown-<i>`, which no server has: what
    /// a client inventing model names costs the server.
    #[arg(long)]
    unknown_models: bool,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
    /// Send to the model's default route (`/v2/models/{m}/infer`), which a
    /// pin or a route of the repository API moves, not to the bundle's version.
    #[arg(long)]
    default_route: bool,
    /// Send over the protocol's gRPC service at `--url` instead of REST.
    /// With `--bodies`, the model and version are read from `--path`
    /// (`/v2/models/{m}[/versions/{v}]/infer`).
    #[arg(long, conflicts_with = "unknown_models")]
    grpc: bool,
}

/// How the requests ended.
#[derive(Debug)]
struct Tally {
    ok: Histogram<u64>,
    all: Histogram<u64>,
    shed: u64,
    other: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.connections.is_none() && !(cli.rate > 0.0 && cli.seconds > 0.0) {
        bail!("--rate and --seconds must be positive");
    }
    let base = cli.url.trim_end_matches('/').to_owned();
    let (model, version, bodies, known) = match (&cli.bundle, &cli.bodies, &cli.path) {
        (Some(bundle), _, _) => {
            let name = |p: Option<&std::path::Path>, what: &str| -> Result<String> {
                let name = p.and_then(|p| p.file_name()).context(what.to_owned())?;
                Ok(name.to_string_lossy().into_owned())
            };
            let version = name(Some(bundle), "bundle folder")?;
            let model = name(bundle.parent(), "model folder")?;
            let url = if cli.default_route {
                format!("{base}/v2/models/{model}/infer")
            } else {
                format!("{base}/v2/models/{model}/versions/{version}/infer")
            };
            let bodies = requests(bundle, cli.rows.max(1))?;
            (model, version, bodies, url)
        }
        (None, Some(file), Some(path)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("{}: cannot read", file.display()))?;
            let bodies: Vec<bytes::Bytes> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| bytes::Bytes::from(l.to_owned()))
                .collect();
            anyhow::ensure!(!bodies.is_empty(), "{}: no request in it", file.display());
            (
                path.clone(),
                "-".to_owned(),
                bodies,
                format!("{base}{path}"),
            )
        }
        _ => bail!("give --bundle, or --bodies with --path"),
    };
    let unknown = cli.unknown_models;
    let url = |i: u64| {
        if unknown {
            format!("{base}/v2/models/unknown-{i}/infer")
        } else {
            known.clone()
        }
    };
    let bodies = if cli.grpc {
        let (model, version) = match &cli.path {
            Some(path) => model_of(path)?,
            None if cli.default_route => (model.clone(), String::new()),
            None => (model.clone(), version.clone()),
        };
        grpc_bodies(&bodies, &model, &version)?
    } else {
        bodies.into_iter().map(Body::Json).collect()
    };
    let channels = match cli.connections {
        Some(connections) if cli.grpc => connections.max(1),
        _ => GRPC_CHANNELS,
    };
    let sender = Sender::new(&cli, &base, channels).await?;

    if let Some(connections) = cli.connections {
        return closed_loop(&cli, &sender, &known, &bodies, connections.max(1)).await;
    }
    let total = (cli.rate * cli.seconds).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / cli.rate);
    let histogram = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3);
    let tally = Arc::new(Mutex::new(Tally {
        ok: histogram()?,
        all: histogram()?,
        shed: 0,
        other: 0,
    }));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    // The schedule is kept by a thread of its own with the OS's sleep,
    // which wakes within tens of microseconds, not tokio's timer, which
    // rounds up to the millisecond: a request late to leave would be
    // counted against the server.
    let (due, mut leave) = tokio::sync::mpsc::unbounded_channel();
    let schedule = std::thread::spawn({
        let start = start.into_std();
        move || {
            for i in 0..total {
                let intended = start + interval.mul_f64(i as f64);
                std::thread::sleep(intended.saturating_duration_since(Instant::now()));
                if due.send((i, intended)).is_err() {
                    break;
                }
            }
        }
    });
    let mut tasks = Vec::with_capacity(total as usize);
    while let Some((i, intended)) = leave.recv().await {
        let intended = tokio::time::Instant::from_std(intended);
        let (sender, url, body) = (
            sender.clone(),
            url(i),
            bodies[i as usize % bodies.len()].clone(),
        );
        let tally = Arc::clone(&tally);
        tasks.push(tokio::spawn(async move {
            let status = sender.send(&url, body, i as usize).await;
            let micros = u64::try_from(intended.elapsed().as_micros()).unwrap_or(u64::MAX);
            let mut tally = tally
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = tally.all.record(micros.max(1));
            match status {
                Some((200, _)) => {
                    let _ = tally.ok.record(micros.max(1));
                }
                Some((503, true)) => tally.shed += 1,
                _ => tally.other += 1,
            }
        }));
    }
    let sent = Instant::now();
    let _ = schedule.join();
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let drained = sent.elapsed().as_secs_f64();
    let tally = tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let figures = serde_json::json!({
        "offered_per_s": cli.rate,
        "seconds": cli.seconds,
        "rows": cli.rows,
        "requests": total,
        "ok": tally.ok.len(),
        "shed": tally.shed,
        "other": tally.other,
        "ok_per_s": tally.ok.len() as f64 / elapsed,
        "ok_p50_ms": ms(&tally.ok, 0.50),
        "ok_p99_ms": ms(&tally.ok, 0.99),
        "ok_p999_ms": ms(&tally.ok, 0.999),
        "ok_max_ms": tally.ok.max() as f64 / 1000.0,
        "all_p50_ms": ms(&tally.all, 0.50),
        "all_p99_ms": ms(&tally.all, 0.99),
        "drained_s": drained,
    });
    #[allow(clippy::print_stdout)]
    if cli.json {
        println!("{figures}");
    } else {
        println!(
            "{model}/{version}: offered {:.0}/s for {:.1} s, {} rows each: {} requests; {} ok \
                ({:.0}/s), {} shed, {} other; ok latency p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; \
                all answers p99 {:.3} ms (drained {:.2} s after the last send)",
            cli.rate,
            cli.seconds,
            cli.rows,
            total,
            tally.ok.len(),
            tally.ok.len() as f64 / elapsed,
            tally.shed,
            tally.other,
            ms(&tally.ok, 0.50),
            ms(&tally.ok, 0.99),
            tally.ok.max() as f64 / 1000.0,
            ms(&tally.all, 0.99),
            drained
        );
    }
    Ok(())
}

/// `connections` loops of send-and-wait for `--seconds`: the requests
/// answered 200 per second, and their latency.
async fn closed_loop(
    cli: &Cli,
    sender: &Sender,
    url: &str,
    bodies: &[Body],
    connections: usize,
) -> Result<()> {
    let until = tokio::time::Instant::now() + Duration::from_secs_f64(cli.seconds.max(0.1));
    let started = Instant::now();
    let mut loops = Vec::with_capacity(connections);
    for c in 0..connections {
        let (sender, url, bodies) = (sender.clone(), url.to_owned(), bodies.to_vec());
        loops.push(tokio::spawn(async move {
            let mut ok = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut other = 0u64;
            let mut i = c;
            while tokio::time::Instant::now() < until {
                let body = bodies[i % bodies.len()].clone();
                i += connections;
                let sent = Instant::now();
                // Loop `c` keeps to connection `c`: one in flight on each.
                let status = sender.send(&url, body, c).await.map(|(status, _)| status);
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                if status == Some(200) {
                    let _ = ok.record(micros.max(1));
                } else {
                    other += 1;
                }
            }
            Ok::<_, anyhow::Error>((ok, other))
        }));
    }
    let mut ok = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut other = 0;
    for task in loops {
        let (h, o) = task.await??;
        ok.add(&h)?;
        other += o;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ms = |q: f64| ok.value_at_quantile(q) as f64 / 1000.0;
    let figures = serde_json::json!({
        "connections": connections,
        "seconds": elapsed,
        "rows": cli.rows,
        "ok": ok.len(),
        "other": other,
        "ok_per_s": ok.len() as f64 / elapsed,
        "ok_p50_ms": ms(0.50),
        "ok_p99_ms": ms(0.99),
    });
    #[allow(clippy::print_stdout)]
    if cli.json {
        println!("{figures}");
    } else {
        println!(
            "closed loop, {connections} connections for {elapsed:.1} s: {} ok ({:.0}/s), {other} \
             other; p50 {:.3} ms, p99 {:.3} ms",
            ok.len(),
            ok.len() as f64 / elapsed,
            ms(0.50),
            ms(0.99)
        );
    }
    Ok(())
}

/// How many connections the open loop spreads its gRPC calls over.
const GRPC_CHANNELS: usize = 4;

/// One request, as its protocol sends it.
#[derive(Clone)]
enum Body {
    Json(bytes::Bytes),
    Grpc(Box<preflight_grpc::ModelInferRequest>),
}

/// The model and version (empty: the default) of an infer path,
/// `/v2/models/{m}[/versions/{v}]/infer`.
fn model_of(path: &str) -> Result<(String, String)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v2", "models", m, "infer"] => Ok(((*m).to_owned(), String::new())),
        ["v2", "models", m, "versions", v, "infer"] => Ok(((*m).to_owned(), (*v).to_owned())),
        _ => bail!("--path {path}: not /v2/models/{{m}}[/versions/{{v}}]/infer"),
    }
}

/// The JSON bodies as gRPC requests to `model` at `version` (empty: its
/// default route).
fn grpc_bodies(bodies: &[bytes::Bytes], model: &str, version: &str) -> Result<Vec<Body>> {
    let grpc = bodies.iter().map(|body| {
        let json: serde_json::Value = serde_json::from_slice(body)?;
        let request = preflight_grpc::request_from_json(&json, model, version, false)?;
        Ok(Body::Grpc(Box::new(request)))
    });
    grpc.collect()
}

/// Where requests go, and how.
#[derive(Clone)]
enum Sender {
    Rest(reqwest::Client),
    /// One client per connection.
    Grpc(Vec<GrpcClient>),
}

type GrpcClient = preflight_grpc::grpc_inference_service_client::GrpcInferenceServiceClient<
    tonic::transport::Channel,
>;

impl Sender {
    async fn new(cli: &Cli, base: &str, channels: usize) -> Result<Self> {
        if !cli.grpc {
            let client = reqwest::Client::builder().pool_max_idle_per_host(256);
            return Ok(Sender::Rest(client.build()?));
        }
        let mut clients = Vec::with_capacity(channels);
        for _ in 0..channels {
            let endpoint = tonic::transport::Endpoint::new(base.to_owned())?.tcp_nodelay(true);
            let channel = endpoint
                .connect()
                .await
                .with_context(|| format!("{base}: cannot connect to the gRPC service"))?;
            clients.push(GrpcClient::new(channel).max_decoding_message_size(usize::MAX));
        }
        Ok(Sender::Grpc(clients))
    }

    /// Sends `body` (to `url`, over REST) on connection `lane` (over gRPC):
    /// the status and whether the server shed it, or `None` where nothing
    /// answered. A gRPC call answered OK is a 200.
    async fn send(&self, url: &str, body: Body, lane: usize) -> Option<(u16, bool)> {
        match (self, body) {
            (Sender::Rest(client), Body::Json(body)) => {
                let sent = client.post(url).header("content-type", "application/json");
                let response = sent.body(body).send().await.ok()?;
                let shed = response.headers().contains_key("retry-after");
                let status = response.status().as_u16();
                response.bytes().await.ok().map(|_| (status, shed))
            }
            (Sender::Grpc(clients), Body::Grpc(request)) => {
                let mut client = clients[lane % clients.len()].clone();
                match client.model_infer(*request).await {
                    Ok(_) => Some((200, false)),
                    Err(status) if status.code() == tonic::Code::Unavailable => {
                        let shed = status.metadata().contains_key("grpc-retry-pushback-ms");
                        Some((503, shed))
                    }
                    Err(_) => Some((500, false)),
                }
            }
            _ => None,
        }
    }
}

/// Request bodies of `rows` rows each, the bundle's samples in turn.
fn requests(dir: &std::path::Path, rows: usize) -> Result<Vec<bytes::Bytes>> {
    let bundle = preflight_bundle::Bundle::open(dir)?;
    let samples = bundle
        .samples()?
        .context("the bundle has no samples.jsonl")?;
    let manifest = bundle.manifest();
    Ok((0..samples.len().min(64))
        .map(|first| {
            let batch: Vec<_> = samples.iter().cycle().skip(first).take(rows).collect();
            bytes::Bytes::from(manifest.infer_request(&batch).to_string())
        })
        .collect())
}
