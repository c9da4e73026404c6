//! What the tests need from the machine, found before anything builds:
//! Chromium (the browser test of report.html), Prometheus and promtool (the
//! alert rules and the dashboard), Python 3.11 with `venv` (the package's
//! tests, the client check, the fixtures), and a Docker engine (the
//! container tests). ONNX Runtime and the Python packages come from PyPI
//! later, into `target/`.
//!
//! Where Debian's packages are missing and the machine can install them (as
//! root, or with `sudo` that asks no password), they are installed, as CI
//! needs on a fresh machine. Where it cannot, the command stops at once with
//! one message naming every missing tool and how to get each: a test never
//! finds a missing tool after a quarter of an hour of building.

use std::process::{Command, Stdio};

use anyhow::{Result, bail};

/// One thing the tests need, how to tell it is there, and how to get it.
struct Need {
    /// As the message names it.
    what: &'static str,
    /// Whether the machine has it.
    found: fn() -> bool,
    /// The Debian package that brings it, where one does.
    package: Option<&'static str>,
    /// How to get it, for the message.
    install: &'static str,
}

fn on_path(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn chromium() -> bool {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .any(|name| on_path(name))
}

fn prometheus() -> bool {
    on_path("prometheus") && on_path("promtool")
}

/// Python 3.11 or later, with the `venv` module and pip to seed it.
fn python() -> bool {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    Command::new(python)
        .args([
            "-c",
            "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn docker() -> bool {
    crate::docker_answers()
}

/// What `cargo xtask test` needs; the container tests' engine unless they
/// are skipped on purpose.
fn needs(containers: bool) -> Vec<Need> {
    let mut needs = vec![
        Need {
            what: "Chromium (the browser test of report.html)",
            found: chromium,
            package: Some("chromium"),
            install: "apt-get install chromium",
        },
        Need {
            what: "Prometheus and promtool (deploy/'s alert rules and dashboard)",
            found: prometheus,
            package: Some("prometheus"),
            install: "apt-get install prometheus",
        },
        Need {
            what: "Python 3.11 or later with venv (set PYTHON to choose one)",
            found: python,
            package: Some("python3-venv"),
            install: "apt-get install python3 python3-venv (or pyenv install 3.11)",
        },
    ];
    if containers {
        needs.push(Need {
            what: "a Docker engine that answers `docker info` (the container tests)",
            found: docker,
            package: None,
            install: "start the Docker engine (https://docs.docker.com/engine/install/), or set \
                PREFLIGHT_SKIP_CONTAINER_TESTS=1 to skip the container tests",
        });
    }
    needs
}

/// How this machine can install Debian's packages: as root, with `sudo`
/// that asks no password, or not at all.
fn installer() -> Option<Vec<&'static str>> {
    if !on_path("apt-get") {
        return None;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        return Some(Vec::new());
    }
    let sudo = Command::new("sudo")
        .args(["-n", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    sudo.then(|| vec!["sudo", "-n"])
}

/// Finds what the tests need; installs the missing Debian packages where the
/// machine can; else fails at once naming everything missing.
pub(crate) fn ensure(containers: bool) -> Result<()> {
    let missing: Vec<Need> = needs(containers)
        .into_iter()
        .filter(|n| !(n.found)())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().filter_map(|n| n.package).collect();
    let prefix = installer();
    if let Some(prefix) = prefix.as_ref().filter(|_| !packages.is_empty()) {
        eprintln!("installing what the tests need: {}", packages.join(", "));
        let apt = |args: &[&str]| -> Result<()> {
            let (program, rest) = match prefix.split_first() {
                Some((sudo, flags)) => (*sudo, [flags, &["apt-get"], args].concat()),
                None => ("apt-get", args.to_vec()),
            };
            crate::exec(
                Command::new(program)
                    .args(rest)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )
        };
        apt(&["update", "-qq"])?;
        apt(&[&["install", "-y", "-qq"], packages.as_slice()].concat())?;
    }
    let still: Vec<String> = missing
        .iter()
        .filter(|n| !(n.found)())
        .map(|n| format!("  - {}: {}", n.what, n.install))
        .collect();
    if still.is_empty() {
        return Ok(());
    }
    let why = match prefix {
        Some(_) => "and cannot install it".to_owned(),
        None if on_path("apt-get") => {
            "and cannot install it here (not root, no sudo without a password)".to_owned()
        }
        None => "and cannot install it here (no apt-get)".to_owned(),
    };
    bail!(
        "the tests need what this machine lacks, {why}:\n{}",
        still.join("\n")
    )
}
