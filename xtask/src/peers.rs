//! `cargo xtask bench peers`: `preflight-serve` beside the ceiling of its
//! stack, measured in one run on the same machine with the same load
//! generator: a bare axum server that echoes the request body on the same
//! path (`benches/src/bin/echo.rs`), and `preflight-serve` on two fixture
//! GBDTs. For each: the closed-loop rate at 16 connections, the server's CPU
//! time per request over that run, and open-loop p50, p99 and p99.9 at
//! 1,000 requests/s (timed from when each request was due). Printed as a
//! table with each rate as a ratio to the echo's, for benches/README.md.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::bench::server_and_load;
use crate::build_release;
use crate::server::Server;

const CONNECTIONS: &str = "16";
const SECONDS: &str = "5";
const OPEN_RATE: &str = "1000";

/// CPU seconds the process has used, user and system, from /proc.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc")?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("/proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line; the state (3) is first after the name.
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
    let (user, system) = (ticks(14), ticks(15));
    Ok((user.context("utime")? + system.context("stime")?) / 100.0)
}

/// `load` for `seconds` with `args`, its `--json` figures.
fn load(release: &Path, url: &str, bundle: &Path, seconds: &str, args: &[&str]) -> Result<Value> {
    let out = Command::new(release.join("load"))
        .args(["--url", url, "--seconds", seconds, "--json", "--bundle"])
        .arg(bundle)
        .args(args)
        .output()
        .context("running load")?;
    anyhow::ensure!(
        out.status.success(),
        "load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("load's figures")
}

struct Row {
    name: String,
    closed_per_s: f64,
    cpu_us: f64,
    open: Value,
}

fn measure(release: &Path, name: &str, server: &Server, bundle: &Path) -> Result<Row> {
    let url = server.url();
    // Warm: connections open, sessions grown, code paged in.
    load(release, url, bundle, "1", &["--connections", CONNECTIONS])?;
    let before = cpu_seconds(server.id())?;
    let closed = load(
        release,
        url,
        bundle,
        SECONDS,
        &["--connections", CONNECTIONS],
    )?;
    let cpu = cpu_seconds(server.id())? - before;
    let ok = closed["ok"].as_f64().unwrap_or(0.0);
    let open = load(release, url, bundle, SECONDS, &["--rate", OPEN_RATE])?;
    Ok(Row {
        name: name.to_owned(),
        closed_per_s: closed["ok_per_s"].as_f64().unwrap_or(0.0),
        cpu_us: cpu / ok.max(1.0) * 1e6,
        open,
    })
}

pub(crate) fn run(root: &Path) -> Result<()> {
    let (lib, release) = server_and_load(root)?;
    build_release(root, &[("preflight-benches", "echo")])?;
    let models = root.join("fixtures/models");
    let mut rows = Vec::new();
    {
        let echo = Server::spawn(Command::new(release.join("echo")))?;
        let bundle = models.join("eta-madrid/2");
        rows.push(measure(
            &release,
            "bare axum echo (the ceiling)",
            &echo,
            &bundle,
        )?);
    }
    let serve = Server::start(&release.join("preflight-serve"), &models, &lib)?;
    serve.wait_ready(Duration::from_secs(60))?;
    for (name, bundle) in [
        (
            "preflight-serve, eta-madrid/2 (scikit-learn GBDT)",
            "eta-madrid/2",
        ),
        ("preflight-serve, eta-lisbon/2 (LightGBM)", "eta-lisbon/2"),
    ] {
        rows.push(measure(&release, name, &serve, &models.join(bundle))?);
    }
    let ceiling = rows[0].closed_per_s.max(1.0);
    let ms = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "| server | closed loop ({CONNECTIONS} connections) | of the ceiling | CPU per \
         request | open loop at {OPEN_RATE}/s: p50 | p99 | p99.9 | errors |"
    );
    eprintln!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        eprintln!(
            "| {} | {:.0}/s | {:.2} | {:.1} µs | {:.3} ms | {:.3} ms | {:.3} ms | {} |",
            r.name,
            r.closed_per_s,
            r.closed_per_s / ceiling,
            r.cpu_us,
            ms(&r.open, "ok_p50_ms"),
            ms(&r.open, "ok_p99_ms"),
            ms(&r.open, "ok_p999_ms"),
            r.open["other"].as_u64().unwrap_or(0) + r.open["shed"].as_u64().unwrap_or(0)
        );
    }
    Ok(())
}
