//! Automation for the Preflight workspace: `cargo xtask <command>`.
//!
//! Every command a person runs locally is the one CI runs; see README.md.

mod abuse;
mod bench;
mod clients;
mod drift;
mod fixtures;
mod fleet;
mod fuzz;
mod image;
mod ort;
mod peers;
mod python;
mod rollout;
mod scale;
mod server;
mod servers;
mod setup;
mod verify;
mod wheel;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  verify [--models DIR] [--shard K/N] [--refresh-baseline] [-- ARGS]
             the release gate: build the image, verify it as a container on
             fixtures/models (or DIR) against fixtures/baseline/report.json, reports in
             target/preflight/; --shard verifies one shard (CI's matrix);
             --refresh-baseline stores a passing run as the baseline; ARGS after
             `--` go to `preflight verify` (--only, --suites, --baseline, ...)
  ci         the style gate: cargo fmt --check, clippy with warnings as
             errors, and the tidy tests (line width, one list of suites,
             docs of every suite, the crate graph's invariants)
  test [ARGS]   run every test of the workspace, the client check, the
                third-party servers' matrix, the Python tests and the wheel
                installed in a fresh environment (what CI runs); ARGS go to
                `cargo test` and skip all but cargo's tests
  bench [server]  the server under open-loop load, and the cost of 300 models
  bench fleet [--models N] [--runs R] [--container]
             `preflight verify` with every suite on N models (default 300), each
             with two versions, made from copies of every fixture model; wall
             time and false alarms of each run
  bench verdicts [--runs R]
             how often latency fails on the clean fixtures and on the slower
             releases of the defect catalogue, over R runs (default 10)
  bench abuse  overload, 1,000-row batches, unknown model names and partial
             request heads against the release server
  bench drift  requests until one input's drift crosses the alert threshold,
             and the other inputs' PSI meanwhile, on the release server
  bench rollout  pins back and forth under 1,000 requests/s of mixed traffic:
             requests lost, and each switch's time to the new version
  bench peers [--runs R]
             preflight-serve beside a bare axum echo (the ceiling), in R rounds
             taken in turn (default 3), and MLServer once: closed-loop rate,
             CPU per request, open-loop p50/p99/p99.9
  bench scale  300 and 1,000 models, their trees as exported and compact:
             time to ready, resident memory, heap, single-row latency
  bench probes [--rows N]
             export defects caught by the probe rows at the trees' splits
             against as many random rows (default: the package's budget)
  client-check  a real third-party client (tritonclient, HTTP and gRPC) against
                preflight-serve
  servers [--bless]
             `preflight verify --target url=` against real third-party servers
             (KServe's Python server) serving a fixture's model; fails when the
             matrix in docs/servers.md is not what they answer now, --bless
             writes it
  image      build the preflight-serve image FROM scratch (no registry needed)
  ort        fetch the pinned ONNX Runtime library into target/ort
  wheel [--check]
             the preflight-bundle wheel with the preflight and preflight-serve
             binaries in it, into target/wheels/ (docs/install.md); --check
             builds it from the debug binaries, installs it into a fresh
             environment and verifies fixtures/models from there
  fixtures   retrain the fixture models with the pinned Python pipeline and
             replace fixtures/models and fixtures/defects/bundles with them
  fuzz [--seconds N] [--target NAME]
             AFL++ on request decoding (v2, v1) and manifest parsing, N s per
             target (default 600); crashes go to fuzz/regressions/ (fuzz/README.md)
";

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<u8> {
    let root = workspace_root();
    let mut args = std::env::args().skip(1);
    let done = |r: Result<()>| r.map(|()| 0);
    match args.next().as_deref() {
        Some("ci") => done(ci(&root)),
        Some("test") => done(test(&root, args.collect())),
        Some("verify") => {
            let (mut models, mut refresh, mut shard) = ("fixtures/models".to_owned(), false, None);
            let mut passed = Vec::new();
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--refresh-baseline" => refresh = true,
                    "--models" => models = args.next().context("--models needs a folder")?,
                    "--shard" => shard = Some(args.next().context("--shard needs K/N")?),
                    // The rest goes to `preflight verify` as it is.
                    "--" => passed.extend(args.by_ref()),
                    other => bail!("unknown option '{other}' of verify\n\n{USAGE}"),
                }
            }
            verify::run(&root, &models, refresh, shard.as_deref(), &passed)
        }
        Some("fixtures") => done(fixtures::run(&root)),
        Some("fuzz") => done(fuzz::run(&root, args.collect())),
        Some("bench") => done(bench_command(&root, args.collect())),
        Some("client-check") => done(clients::run(&root)),
        Some("servers") => done(servers::run(&root, args.any(|a| a == "--bless"))),
        Some("image") => done(image::build(&root).map(drop)),
        Some("ort") => done(ort::ensure(&root).map(drop)),
        Some("wheel") => match args.next().as_deref() {
            None => done(wheel::build(&root, "release").map(drop)),
            Some("--check") => done(wheel::check(&root)),
            Some(other) => bail!("unknown option '{other}' of wheel\n\n{USAGE}"),
        },
        Some("-h" | "--help") | None => {
            eprint!("{USAGE}");
            Ok(0)
        }
        Some(other) => bail!("unknown command '{other}'\n\n{USAGE}"),
    }
}

/// `cargo xtask bench [server|fleet|verdicts|abuse|drift|rollout|peers|scale|probes] [OPTIONS]`.
fn bench_command(root: &Path, args: Vec<String>) -> Result<()> {
    let mut args = args.into_iter();
    let which = args.next();
    let mut bench = fleet::FleetBench {
        models: 300,
        runs: 1,
        container: false,
    };
    let (mut runs, mut rows) = (None, None);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> Result<usize> {
            args.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{what} needs a number"))
        };
        match arg.as_str() {
            "--models" => bench.models = number("--models")?,
            "--runs" => runs = Some(number("--runs")?),
            "--rows" => rows = Some(number("--rows")?),
            "--container" => bench.container = true,
            other => bail!("unknown option '{other}' of bench\n\n{USAGE}"),
        }
    }
    match which.as_deref() {
        None | Some("server") => bench::run(root),
        Some("fleet") => {
            bench.runs = runs.unwrap_or(1);
            fleet::fleet(root, &bench)
        }
        Some("verdicts") => fleet::verdicts(root, runs.unwrap_or(10)),
        Some("abuse") => abuse::run(root),
        Some("drift") => drift::run(root),
        Some("rollout") => rollout::run(root),
        Some("peers") => peers::run(root, runs.unwrap_or(3)),
        Some("scale") => scale::run(root),
        Some("probes") => python::probes(root, rows),
        Some(other) => bail!("unknown bench '{other}'\n\n{USAGE}"),
    }
}

/// `cargo xtask ci`: the style gate, which CI runs before the tests.
fn ci(root: &Path) -> Result<()> {
    let cargo = |args: &[&str]| exec(Command::new(cargo()).current_dir(root).args(args));
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "--deny",
        "warnings",
    ])?;
    cargo(&[
        "test",
        "--locked",
        "--package",
        "preflight-harness",
        "--test",
        "it",
        "tidy::",
    ])
}

/// `cargo xtask test [ARGS]`: every test of the workspace, then the
/// third-party client check, the Python package's tests and the offline
/// validation of `deploy/`'s manifests. ARGS go to `cargo test` and skip the
/// rest.
fn test(root: &Path, args: Vec<String>) -> Result<()> {
    // The container tests run whenever a Docker engine answers; without one
    // they fail, unless they are skipped on purpose.
    let skip_containers = std::env::var("PREFLIGHT_SKIP_CONTAINER_TESTS").is_ok_and(|v| v == "1");
    // Before anything builds: what the tests need, found or installed.
    setup::ensure(!skip_containers)?;
    let lib = ort::ensure(root)?;
    let image = if skip_containers {
        None
    } else {
        Some(image::build(root)?)
    };
    let mut command = Command::new(cargo());
    command
        .current_dir(root)
        .env("ORT_DYLIB_PATH", lib)
        .args(["test", "--workspace", "--locked"])
        .args(&args);
    match &image {
        Some(tag) => command.env("PREFLIGHT_IMAGE", tag),
        None => command.env("PREFLIGHT_SKIP_CONTAINER_TESTS", "1"),
    };
    exec(&mut command)?;
    if args.is_empty() {
        clients::run(root)?;
        servers::run(root, false)?;
        python::run(root, image.as_deref())?;
        python::deploy(root)?;
        wheel::check(root)?;
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
    pip_install(&python, &[OsStr::new("-r"), requirements.as_os_str()])?;
    Ok(python)
}

/// `pip install --quiet ARGS` with `python`.
fn pip_install(python: &Path, args: &[&OsStr]) -> Result<()> {
    exec(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(args),
    )
}

/// Whether a Docker engine answers on this machine.
fn docker_answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The workspace's binaries in the dev profile, built as `cargo test
/// --workspace` builds them (with the tests' features, so that nothing is
/// compiled twice for another feature set); returns `target/debug`.
fn build_debug(root: &Path) -> Result<PathBuf> {
    exec(Command::new(cargo()).current_dir(root).args([
        "test",
        "--workspace",
        "--locked",
        "--no-run",
    ]))?;
    Ok(root.join("target/debug"))
}

/// Builds binaries in release mode, each `(package, binary)`; returns `target/release`.
fn build_release(root: &Path, binaries: &[(&str, &str)]) -> Result<PathBuf> {
    let mut command = Command::new(cargo());
    command
        .current_dir(root)
        .args(["build", "--release", "--locked"]);
    for (package, binary) in binaries {
        command.args(["--package", package, "--bin", binary]);
    }
    exec(&mut command)?;
    Ok(root.join("target/release"))
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
