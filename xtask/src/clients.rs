//! `cargo xtask client-check`: a real third-party client (NVIDIA's
//! `tritonclient[http]` from PyPI) gets correct predictions from
//! `preflight-serve` running on the fixtures.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::server::Server;
use crate::{cargo, exec, ort, python_env};

/// Bundles the client checks: a scikit-learn and a LightGBM regressor, a
/// binary scikit-learn classifier and a four-class LightGBM one.
const BUNDLES: [&str; 4] = [
    "fixtures/models/eta-madrid/1",
    "fixtures/models/eta-lisbon/2",
    "fixtures/models/late-madrid/1",
    "fixtures/models/vehicle-madrid/1",
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

    let server = Server::start(
        &root.join("target/debug/preflight-serve"),
        &root.join("fixtures/models"),
        &lib,
    )?;
    let url = server.url();
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
