//! `cargo xtask client-check`: a real third-party client (NVIDIA's
//! `tritonclient[http]` from PyPI) gets correct predictions from
//! `preflight-serve` running on the fixtures.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{cargo, exec, ort, python_env};

/// Bundles the client checks: one scikit-learn and one LightGBM export.
const BUNDLES: [&str; 2] = [
    "fixtures/models/eta-madrid/1",
    "fixtures/models/eta-lisbon/2",
];

pub(crate) fn run(root: &Path) -> Result<()> {
    let lib = ort::ensure(root)?;
    let python = python_env(
        root,
        "client-venv",
        &root.join("xtask/clients/requirements.txt"),
    )?;
    exec(Command::new(cargo()).current_dir(root).args([
        "build",
        "--locked",
        "--package",
        "preflight-serving",
        "--bin",
        "preflight-serve",
    ]))?;

    let mut server = Server(
        Command::new(root.join("target/debug/preflight-serve"))
            .args(["--addr", "127.0.0.1:0", "--models"])
            .arg(root.join("fixtures/models"))
            .env("ORT_DYLIB_PATH", &lib)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting preflight-serve")?,
    );
    let stdout = server.0.stdout.take().context("preflight-serve's stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let Some(url) = line.trim().strip_prefix("listening on ") else {
        bail!("preflight-serve did not say where it listens (first line: {line:?})");
    };
    for bundle in BUNDLES {
        exec(
            Command::new(&python)
                .arg(root.join("xtask/clients/tritonclient_check.py"))
                .arg(url)
                .arg(root.join(bundle)),
        )?;
    }
    Ok(())
}

/// Stops the server however the check ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
