//! `cargo xtask bench drift`: how many requests a drift on one input takes
//! to cross the alert threshold, and how high the other inputs' PSI goes
//! meanwhile, on the release server; `xtask/bench/drift.py` sends the
//! requests and reads the monitor. The figures go in docs/observability.md.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::server::Server;
use crate::{build_release, exec, ort};

pub(crate) fn run(root: &Path) -> Result<()> {
    let lib = ort::ensure(root)?;
    let release = build_release(root, &[("preflight-serving", "preflight-serve")])?;
    let models = root.join("fixtures/models");
    let server = Server::start(&release.join("preflight-serve"), &models, &lib)?;
    server.wait_ready(Duration::from_secs(60))?;
    exec(
        Command::new("python3")
            .arg(root.join("xtask/bench/drift.py"))
            .arg(server.url())
            .arg(&models),
    )
}
