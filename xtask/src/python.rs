//! The `preflight-bundle` Python package's tests: pytest in
//! `target/python-venv`, over the package installed from `python/` with the
//! pins of `python/requirements.txt`. Its test of `preflight verify` on the
//! bundles it writes uses the debug binaries `cargo test` has built.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::{exec, ort, python_env};

pub(crate) fn run(root: &Path) -> Result<()> {
    let lib = ort::ensure(root)?;
    let python = python_env(root, "python-venv", &root.join("python/requirements.txt"))?;
    exec(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-deps", "--force-reinstall"])
            .arg(root.join("python")),
    )?;
    exec(
        Command::new(&python)
            .current_dir(root)
            .env("ORT_DYLIB_PATH", lib)
            .args(["-m", "pytest", "-q", "python/tests"]),
    )
}
