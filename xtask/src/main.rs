//! Automation for the Preflight workspace: `cargo xtask <command>`.
//!
//! Every command a person runs locally is the one CI runs; see README.md.

mod bench;
mod clients;
mod fixtures;
mod image;
mod ort;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test [ARGS]   run every test of the workspace and the client check (what CI runs);
                ARGS go to `cargo test` and skip the client check
  bench      the server under open-loop load, and the cost of 300 models
  client-check  a real third-party client (tritonclient) against preflight-serve
  image      build the preflight-serve image FROM scratch (no registry needed)
  ort        fetch the pinned ONNX Runtime library into target/ort
  fixtures   retrain the fixture models with the pinned Python pipeline and
             replace fixtures/models and fixtures/defects/bundles with them
";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("test") => test(&workspace_root(), args.collect()),
        Some("fixtures") => fixtures::run(&workspace_root()),
        Some("bench") => bench::run(&workspace_root()),
        Some("client-check") => clients::run(&workspace_root()),
        Some("image") => image::build(&workspace_root()).map(drop),
        Some("ort") => ort::ensure(&workspace_root()).map(drop),
        Some("-h" | "--help") | None => {
            eprint!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command '{other}'\n\n{USAGE}"),
    }
}

/// `cargo xtask test [ARGS]`: every test of the workspace, then the
/// third-party client check. ARGS go to `cargo test` and skip the client check.
fn test(root: &Path, args: Vec<String>) -> Result<()> {
    let lib = ort::ensure(root)?;
    exec(
        Command::new(cargo())
            .current_dir(root)
            .env("ORT_DYLIB_PATH", lib)
            .args(["test", "--workspace", "--locked"])
            .args(&args),
    )?;
    if args.is_empty() {
        clients::run(root)?;
    }
    Ok(())
}

/// A virtual environment `target/<name>` with `requirements` installed; its python.
fn python_env(root: &Path, name: &str, requirements: &Path) -> Result<PathBuf> {
    let venv = root.join("target").join(name);
    let python = venv.join("bin/python");
    if !python.exists() {
        let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        exec(Command::new(system_python).arg("-m").arg("venv").arg(&venv))?;
    }
    exec(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(requirements),
    )?;
    Ok(python)
}

/// The cargo that runs xtask, so the pinned toolchain builds everything.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command to completion, failing with the command line when it fails.
fn exec(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}");
    // An inline script would fill the screen: show its first line only.
    eprintln!("$ {}", shown.lines().next().unwrap_or_default());
    let status = command
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}
