//! The tests that run in Python: the `preflight-bundle` package's pytest
//! suite in `target/python-venv`, over the package installed from `python/`
//! with the pins of `python/requirements.txt` (its test of `preflight
//! verify` on the bundles it writes uses the debug binaries `cargo test` has
//! built); and the offline validation of `deploy/`'s Kubernetes and KServe
//! manifests, with its own tests, in `target/deploy-venv`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::{exec, ort, pip_install, python_env};

/// `image`, where the container tests run, is the serving image the
/// package's test of `preflight verify` verifies its bundles in.
pub(crate) fn run(root: &Path, image: Option<&str>) -> Result<()> {
    let lib = ort::ensure(root)?;
    let python = package(root)?;
    let mut pytest = Command::new(&python);
    pytest.current_dir(root).env("ORT_DYLIB_PATH", lib).args([
        "-m",
        "pytest",
        "-q",
        "python/tests",
    ]);
    if let Some(image) = image {
        pytest.env("PREFLIGHT_IMAGE", image);
    }
    exec(&mut pytest)
}

/// The Python of `target/python-venv`, with the package installed from
/// `python/` as it is now.
pub(crate) fn package(root: &Path) -> Result<PathBuf> {
    let python = python_env(root, "python-venv", &root.join("python/requirements.txt"))?;
    let package = root.join("python");
    let flags = ["--no-deps", "--force-reinstall"].map(OsStr::new);
    pip_install(&python, &[flags[0], flags[1], package.as_os_str()])?;
    Ok(python)
}

/// `cargo xtask bench probes`: `xtask/bench/probes.py` with the package as
/// it is now; `rows` probe rows and as many random rows per model.
pub(crate) fn probes(root: &Path, rows: Option<usize>) -> Result<()> {
    let python = package(root)?;
    let mut bench = Command::new(python);
    bench.arg(root.join("xtask/bench/probes.py"));
    bench.args(rows.map(|n| n.to_string()));
    exec(&mut bench)
}

/// `deploy/validate.py` over every manifest, then its tests.
pub(crate) fn deploy(root: &Path) -> Result<()> {
    let python = python_env(root, "deploy-venv", &root.join("deploy/requirements.txt"))?;
    exec(
        Command::new(&python)
            .current_dir(root)
            .arg("deploy/validate.py"),
    )?;
    exec(Command::new(&python).current_dir(root).args([
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "deploy/test_validate.py",
    ]))
}
