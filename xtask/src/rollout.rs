//! `cargo xtask bench rollout`: pins back and forth on the release server
//! under 1,000 requests/s of mixed traffic to the default route (800
//! single-row and 200 fifty-row requests a second, from two `load`
//! processes), counting every request that was not answered 200, and the
//! switch time of each pin, from the call to the first answer of the new
//! version (`xtask/bench/rollout.py`). The figures go in docs/serving.md.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bench::server_and_load;
use crate::exec;
use crate::server::Server;

const SECONDS: &str = "14";

pub(crate) fn run(root: &Path) -> Result<()> {
    let (lib, release) = server_and_load(root)?;
    let models = root.join("fixtures/models");
    let server = Server::start_with(
        &release.join("preflight-serve"),
        &models,
        &lib,
        &["--open-repository-api"],
    )?;
    server.wait_ready(Duration::from_secs(60))?;
    let bundle = models.join("eta-madrid/2");
    let load = |rate: &str, rows: &str| {
        Command::new(release.join("load"))
            .args(["--url", server.url(), "--rate", rate, "--seconds", SECONDS])
            .args(["--rows", rows, "--default-route", "--bundle"])
            .arg(&bundle)
            .stdout(Stdio::piped())
            .spawn()
            .context("start load")
    };
    let single = load("800", "1")?;
    let batches = load("200", "50")?;
    exec(
        Command::new("python3")
            .arg(root.join("xtask/bench/rollout.py"))
            .arg(server.url()),
    )?;
    for (what, child) in [("single rows", single), ("50-row batches", batches)] {
        let out = child.wait_with_output().context("load")?;
        eprintln!("{what}: {}", String::from_utf8_lossy(&out.stdout).trim());
    }
    Ok(())
}
