//! `cargo xtask bench`: the server under load on loopback, and the cost of a
//! repository of 300 models. Prints the figures recorded in benches/README.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::server::Server;
use crate::{build_release, exec, ort};

/// Offered single-row request rates, per second.
const RATES: [u32; 4] = [500, 1000, 2000, 4000];
const COPIES: usize = 300;

/// ONNX Runtime, and the release `preflight-serve` and `load`: the library's
/// path and the folder of the binaries.
pub(crate) fn server_and_load(root: &Path) -> Result<(PathBuf, PathBuf)> {
    let lib = ort::ensure(root)?;
    let release = build_release(
        root,
        &[
            ("preflight-serving", "preflight-serve"),
            ("preflight-benches", "load"),
        ],
    )?;
    Ok((lib, release))
}

/// The release `load` in `release` with `args` and `--json`: its figures.
pub(crate) fn load_json(release: &Path, args: &[String]) -> Result<serde_json::Value> {
    let out = Command::new(release.join("load"))
        .arg("--json")
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

pub(crate) fn run(root: &Path) -> Result<()> {
    let (lib, release) = server_and_load(root)?;

    eprintln!(
        "== open-loop load, single-row requests, eta-madrid/1 (scikit-learn GBDT, 200 trees)"
    );
    let server = Server::start(
        &release.join("preflight-serve"),
        &root.join("fixtures/models"),
        &lib,
    )?;
    server.wait_ready(Duration::from_secs(60))?;
    for rate in RATES {
        exec(
            Command::new(release.join("load"))
                .args([
                    "--url",
                    server.url(),
                    "--rate",
                    &rate.to_string(),
                    "--seconds",
                    "5",
                    "--bundle",
                ])
                .arg(root.join("fixtures/models/eta-madrid/1")),
        )?;
    }
    drop(server);

    eprintln!("== {COPIES} models (copies of eta-madrid/1)");
    let repo = root.join("target/bench-repository");
    let bundle = root.join("fixtures/models/eta-madrid/1");
    let (_server, ready, rss) = serve_copies(&release, &lib, &bundle, &repo, COPIES)?;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{COPIES} models: ready in {:.2} s, resident memory {rss:.0} MiB ({:.1} MiB per \
             model)",
            ready.as_secs_f64(),
            rss / COPIES as f64
        );
    }
    Ok(())
}

/// `n` copies of `bundle` in `repo`, served by the release server in
/// `release`: the server, its time to ready and its resident memory in MiB.
pub(crate) fn serve_copies(
    release: &Path,
    lib: &Path,
    bundle: &Path,
    repo: &Path,
    n: usize,
) -> Result<(Server, Duration, f64)> {
    copies(bundle, repo, n)?;
    let started = Instant::now();
    let server = Server::start(&release.join("preflight-serve"), repo, lib)?;
    server.wait_ready(Duration::from_secs(600))?;
    let ready = started.elapsed();
    let rss = resident_kib(server.id())? as f64 / 1024.0;
    Ok((server, ready, rss))
}

/// `n` copies of a bundle as `<repo>/eta-copy-NNN/1`, their files hard-linked.
fn copies(bundle: &Path, repo: &Path, n: usize) -> Result<()> {
    if repo.exists() {
        std::fs::remove_dir_all(repo)?;
    }
    let model = bundle
        .parent()
        .and_then(Path::file_name)
        .context("model folder")?
        .to_string_lossy()
        .into_owned();
    for i in 0..n {
        let name = format!("eta-copy-{i:03}");
        crate::fleet::copy_bundle(bundle, &repo.join(&name).join("1"), &model, &name, 1)?;
    }
    Ok(())
}

/// Resident memory of a process, from /proc.
pub(crate) fn resident_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading /proc (Linux only)")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}
