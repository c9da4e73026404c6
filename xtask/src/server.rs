//! `preflight-serve` started by xtask on a free port, through
//! `preflight_testkit::Listening`: its `listening on` line read, readiness
//! polled, and the process stopped however xtask ends.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, anyhow};
use preflight_testkit::Listening;

pub(crate) struct Server(Listening);

impl Server {
    pub(crate) fn start(binary: &Path, models: &Path, lib: &Path) -> Result<Self> {
        Self::start_with(binary, models, lib, &["--log", "warn"])
    }

    /// [`Server::start`] with these flags instead of `--log warn`.
    pub(crate) fn start_with(
        binary: &Path,
        models: &Path,
        lib: &Path,
        flags: &[&str],
    ) -> Result<Self> {
        let mut command = Command::new(binary);
        command
            .args(["--addr", "127.0.0.1:0", "--models"])
            .arg(models)
            .args(flags)
            .env("ORT_DYLIB_PATH", lib);
        Listening::start(command).map(Self).map_err(|e| anyhow!(e))
    }

    /// Any program that prints `listening on http://ADDR` first.
    pub(crate) fn spawn(command: Command) -> Result<Self> {
        Listening::start(command).map(Self).map_err(|e| anyhow!(e))
    }

    /// A Python script that serves on a port it is given, run with the
    /// Python of the virtual environment `target/<venv>` that has
    /// `requirements` installed: `python SCRIPT PORT ARGS...`, on a free port.
    pub(crate) fn python(
        root: &Path,
        (venv, requirements): (&str, &Path),
        script: &Path,
        args: &[&std::ffi::OsStr],
    ) -> Result<Self> {
        let python = crate::python_env(root, venv, requirements)?;
        let mut command = Command::new(python);
        command.arg(script).arg(free_port()?.to_string()).args(args);
        Self::spawn(command)
    }

    pub(crate) fn url(&self) -> &str {
        &self.0.url
    }

    /// The gRPC service's `HOST:PORT`, when the server was started with one.
    pub(crate) fn grpc(&self) -> Option<&str> {
        self.0.grpc.as_deref()
    }

    pub(crate) fn id(&self) -> u32 {
        self.0.id()
    }

    /// Stops a server that passes SIGTERM on to processes of its own (the
    /// Python servers start theirs in sessions of their own, which the
    /// drop's SIGKILL of the script would leave running): SIGTERM, and up to
    /// `grace` for it to exit, before the drop.
    pub(crate) fn terminate(mut self, grace: Duration) {
        let pid = self.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let started = std::time::Instant::now();
        while started.elapsed() < grace {
            if matches!(self.0.child().try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn wait_ready(&self, limit: Duration) -> Result<()> {
        self.0.wait_ready(limit).map_err(|e| anyhow!(e))
    }
}

/// A port free now, for a server that must be told one: the next bind may
/// take it first, which the server's start then says.
pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
