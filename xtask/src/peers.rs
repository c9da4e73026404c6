//! `cargo xtask bench peers`: `preflight-serve` beside the ceiling of its
//! stack and a peer, measured in one run on the same machine with the same
//! load generator: a bare axum server that echoes the request body on the
//! same path (`benches/src/bin/echo.rs`), `preflight-serve` on two fixture
//! GBDTs, over REST and over the protocol's gRPC service (the same requests,
//! made into messages before the clock starts), and Seldon MLServer
//! (pinned, in `target/mlserver-peer-venv`) serving eta-lisbon/2's
//! LightGBM booster (`fixtures/peers/`). For each: the closed-loop rate at
//! 16 connections, the CPU time of the server's process tree per request
//! over that run, and open-loop p50, p99 and p99.9 at 1,000 requests/s
//! (timed from when each request was due). The echo and
//! `preflight-serve` are measured in rounds, in turn (`--runs`, default 3),
//! since the machines this runs on drift by a fifth within minutes; each
//! rate's ratio to the echo's is taken against the same round's echo. Both
//! run throughout, each idle while the other is measured (an idle
//! `preflight-serve` blocks on its queues and timers).
//! Each round's rates and ratios go to standard error as the round ends;
//! standard output gets a table of ranges over the rounds, with each rate
//! as a ratio to the echo's and to MLServer's, for benches/README.md.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::bench::{load_json, server_and_load};
use crate::build_release;
use crate::server::{Server, free_port};

const CONNECTIONS: &str = "16";
const SECONDS: &str = "5";
const OPEN_RATE: &str = "1000";

/// A process's parent and CPU seconds (user and system), from /proc.
fn stat(pid: u32) -> Option<(u32, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 4, 14 and 15 of the line; the state (3) is first after the name.
    let field = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
    Some((field(4)? as u32, (field(14)? + field(15)?) / 100.0))
}

/// CPU seconds used by `root` and every process below it: MLServer answers
/// from a worker process of its own.
fn cpu_seconds(root: u32) -> Result<f64> {
    let processes: Vec<(u32, u32, f64)> = std::fs::read_dir("/proc")
        .context("reading /proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat(pid).map(|(parent, cpu)| (pid, parent, cpu)))
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(processes.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    Ok(processes
        .iter()
        .filter(|p| tree.contains(&p.0))
        .map(|p| p.2)
        .sum())
}

/// What a server is sent: a bundle's samples, or request bodies to a path;
/// over REST, or over the protocol's gRPC service (`grpc`).
struct Traffic<'a> {
    requests: Requests<'a>,
    grpc: bool,
}

enum Requests<'a> {
    Bundle(&'a Path),
    Bodies(&'a Path, &'a str),
}

impl<'a> Traffic<'a> {
    fn bundle(dir: &'a Path, grpc: bool) -> Self {
        let requests = Requests::Bundle(dir);
        Self { requests, grpc }
    }

    /// Where the traffic goes on `server`.
    fn url(&self, server: &Server) -> Result<String> {
        if !self.grpc {
            return Ok(server.url().to_owned());
        }
        let grpc = server.grpc().context("the server has no gRPC service")?;
        Ok(format!("http://{grpc}"))
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = match self.requests {
            Requests::Bundle(dir) => vec!["--bundle".into(), dir.display().to_string()],
            Requests::Bodies(file, path) => vec![
                "--bodies".into(),
                file.display().to_string(),
                "--path".into(),
                path.to_owned(),
            ],
        };
        if self.grpc {
            args.push("--grpc".into());
        }
        args
    }
}

/// `load` for `seconds` with `args`, its `--json` figures.
fn load(
    release: &Path,
    url: &str,
    traffic: &Traffic<'_>,
    seconds: &str,
    args: &[&str],
) -> Result<Value> {
    let mut all: Vec<String> = vec![
        "--url".into(),
        url.into(),
        "--seconds".into(),
        seconds.into(),
    ];
    all.extend(traffic.args());
    all.extend(args.iter().map(|a| (*a).to_owned()));
    load_json(release, &all)
}

/// One server's figures in one round.
struct Measured {
    closed_per_s: f64,
    cpu_us: f64,
    open: Value,
}

/// One server's rounds.
struct Row {
    name: String,
    rounds: Vec<Measured>,
}

fn measure(release: &Path, server: &Server, traffic: &Traffic<'_>) -> Result<Measured> {
    let url = &traffic.url(server)?;
    // Warm: connections open, sessions grown, code paged in.
    load(release, url, traffic, "1", &["--connections", CONNECTIONS])?;
    let before = cpu_seconds(server.id())?;
    let closed = load(
        release,
        url,
        traffic,
        SECONDS,
        &["--connections", CONNECTIONS],
    )?;
    let cpu = cpu_seconds(server.id())? - before;
    let ok = closed["ok"].as_f64().unwrap_or(0.0);
    let open = load(release, url, traffic, SECONDS, &["--rate", OPEN_RATE])?;
    Ok(Measured {
        closed_per_s: closed["ok_per_s"].as_f64().unwrap_or(0.0),
        cpu_us: cpu / ok.max(1.0) * 1e6,
        open,
    })
}

/// `rounds` rounds of the echo and `preflight-serve` on both models, in
/// turn, so that each ratio compares figures taken minutes apart on a
/// machine that drifts; then MLServer, once (it is twenty times slower).
pub(crate) fn run(root: &Path, rounds: usize) -> Result<()> {
    anyhow::ensure!(rounds > 0, "--runs must be at least 1");
    let (lib, release) = server_and_load(root)?;
    build_release(root, &[("preflight-benches", "echo")])?;
    let models = root.join("fixtures/models");
    let echo = Server::spawn(Command::new(release.join("echo")))?;
    let serve = Server::start_with(
        &release.join("preflight-serve"),
        &models,
        &lib,
        &["--log", "warn", "--grpc-addr", "127.0.0.1:0"],
    )?;
    serve.wait_ready(Duration::from_secs(60))?;
    let (madrid, lisbon) = (models.join("eta-madrid/2"), models.join("eta-lisbon/2"));
    let servers = [
        (
            "bare axum echo (the ceiling)",
            &echo,
            Traffic::bundle(&madrid, false),
        ),
        (
            "preflight-serve, eta-madrid/2 (scikit-learn GBDT)",
            &serve,
            Traffic::bundle(&madrid, false),
        ),
        (
            "preflight-serve, eta-lisbon/2 (LightGBM)",
            &serve,
            Traffic::bundle(&lisbon, false),
        ),
        (
            "preflight-serve over gRPC, eta-madrid/2",
            &serve,
            Traffic::bundle(&madrid, true),
        ),
        (
            "preflight-serve over gRPC, eta-lisbon/2",
            &serve,
            Traffic::bundle(&lisbon, true),
        ),
    ];
    let mut rows: Vec<Row> = servers
        .iter()
        .map(|(name, _, _)| Row {
            name: (*name).to_owned(),
            rounds: Vec::new(),
        })
        .collect();
    for round in 1..=rounds {
        for ((name, server, traffic), row) in servers.iter().zip(&mut rows) {
            eprintln!("== round {round}: {name}");
            row.rounds.push(measure(&release, server, traffic)?);
        }
        // Each round as it ends: the table gives only the ranges.
        let ceiling = rows
            .first()
            .and_then(|echo| echo.rounds.last())
            .map_or(0.0, |m| m.closed_per_s);
        for row in &rows {
            if let Some(m) = row.rounds.last() {
                eprintln!(
                    "   round {round}: {}: {:.0}/s, {:.2} of the echo, {:.1} µs a request",
                    row.name,
                    m.closed_per_s,
                    m.closed_per_s / ceiling,
                    m.cpu_us
                );
            }
        }
    }
    drop((echo, serve));
    // The rounds are printed whatever becomes of MLServer, and its failure
    // is the bench's.
    let peers = peer(root, &release);
    print(&rows, peers.as_deref().unwrap_or_default());
    peers.map(drop).context("MLServer")
}

/// MLServer's one round, over REST and over gRPC.
fn peer(root: &Path, release: &Path) -> Result<Vec<Row>> {
    let mlserver = mlserver(root)?;
    let requests = root.join("fixtures/peers/eta-lisbon-2/requests.jsonl");
    let mut rows = Vec::new();
    for (grpc, protocol) in [(false, "REST"), (true, "gRPC")] {
        let requests = Requests::Bodies(&requests, "/v2/models/eta-lisbon/infer");
        let measured = measure(release, &mlserver, &Traffic { requests, grpc })?;
        rows.push(Row {
            name: format!(
                "Seldon MLServer 1.7.1, eta-lisbon/2's booster (LightGBM runtime), {protocol}"
            ),
            rounds: vec![measured],
        });
    }
    mlserver.terminate(Duration::from_secs(25));
    Ok(rows)
}

/// The lowest and highest of `values`, as `low–high` (one figure when they
/// are the same); `–` when none is a number.
fn range(values: impl Iterator<Item = f64>, format: impl Fn(f64) -> String) -> String {
    let (low, high) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if low > high {
        return "–".to_owned();
    }
    let (low, high) = (format(low), format(high));
    if low == high {
        low
    } else {
        format!("{low}–{high}")
    }
}

/// The table, one row per server with the range over its rounds. A rate's
/// ratio to the echo's is taken round by round, against the echo of the
/// same round (MLServer's one round against each of the echo's); its
/// ratio to MLServer's against MLServer's over REST, where `peers` were
/// measured (their rows come last).
fn print(rows: &[Row], peers: &[Row]) {
    let Some(echo) = rows.first() else {
        return;
    };
    let rate = (peers.first())
        .and_then(|p| p.rounds.first())
        .map_or(f64::NAN, |m| m.closed_per_s.max(1.0));
    let ms = |m: &Measured, k: &str| m.open[k].as_f64().unwrap_or(f64::NAN);
    let count = |m: &Measured, k: &str| m.open[k].as_u64().unwrap_or(0);
    let errors = |m: &Measured| count(m, "other") + count(m, "shed");
    eprintln!(
        "| server | rounds | closed loop ({CONNECTIONS} connections) | of the ceiling \
         | of MLServer | CPU per request | open loop at {OPEN_RATE}/s: p50 | p99 | p99.9 \
         | errors |"
    );
    eprintln!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in rows.iter().chain(peers) {
        let of_ceiling: Vec<f64> = if r.rounds.len() == echo.rounds.len() {
            let pairs = r.rounds.iter().zip(&echo.rounds);
            pairs
                .map(|(m, e)| m.closed_per_s / e.closed_per_s.max(1.0))
                .collect()
        } else {
            // MLServer's one round, against every round of the echo.
            let all = r
                .rounds
                .iter()
                .flat_map(|m| echo.rounds.iter().map(move |e| (m, e)));
            all.map(|(m, e)| m.closed_per_s / e.closed_per_s.max(1.0))
                .collect()
        };
        let figures = |f: &dyn Fn(&Measured) -> f64, format: &dyn Fn(f64) -> String| {
            range(r.rounds.iter().map(f), format)
        };
        eprintln!(
            "| {} | {} | {}/s | {} | {} | {} µs | {} ms | {} ms | {} ms | {} |",
            r.name,
            r.rounds.len(),
            figures(&|m| m.closed_per_s, &|v| format!("{v:.0}")),
            range(of_ceiling.into_iter(), |v| format!("{v:.2}")),
            figures(&|m| m.closed_per_s / rate, &|v| format!("{v:.1}×")),
            figures(&|m| m.cpu_us, &|v| format!("{v:.1}")),
            figures(&|m| ms(m, "ok_p50_ms"), &|v| format!("{v:.3}")),
            figures(&|m| ms(m, "ok_p99_ms"), &|v| format!("{v:.3}")),
            figures(&|m| ms(m, "ok_p999_ms"), &|v| format!("{v:.3}")),
            r.rounds.iter().map(errors).sum::<u64>()
        );
    }
}

/// MLServer on a free port, from `xtask/servers/mlserver/serve.py` in its
/// pinned environment.
fn mlserver(root: &Path) -> Result<Server> {
    let booster = root.join("fixtures/peers/eta-lisbon-2/booster.txt");
    let grpc_port = free_port()?.to_string();
    Server::python(
        root,
        (
            "mlserver-peer-venv",
            &root.join("xtask/servers/mlserver/requirements.txt"),
        ),
        &root.join("xtask/servers/mlserver/serve.py"),
        &[
            booster.as_os_str(),
            OsStr::new("--grpc-port"),
            OsStr::new(&grpc_port),
        ],
    )
}
