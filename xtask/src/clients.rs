//! `cargo xtask client-check`: a real third-party client (NVIDIA's
//! `tritonclient` from PyPI, its HTTP and its gRPC client) gets correct
//! predictions from `preflight-serve` running on the fixtures.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::server::Server;
use crate::{build_debug, exec, ort, python_env};

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
    let bin = build_debug(root)?;
    let server = Server::start_with(
        &bin.join("preflight-serve"),
        &root.join("fixtures/models"),
        &lib,
        &["--log", "warn", "--grpc-addr", "127.0.0.1:0"],
    )?;
    let grpc = (server.grpc()).context("preflight-serve did not say where its gRPC service is")?;
    for (url, protocol) in [(server.url(), "http"), (grpc, "grpc")] {
        for bundle in BUNDLES {
            exec(
                Command::new(&python)
                    .arg(root.join("xtask/clients/tritonclient_check.py"))
                    .arg(url)
                    .arg(root.join(bundle))
                    .arg(protocol),
            )?;
        }
    }
    Ok(())
}
