//! `preflight-serve` started by xtask on a free port: its `listening on`
//! line read, readiness polled, and the process stopped however xtask ends.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Server {
    pub(crate) fn start(binary: &Path, models: &Path, lib: &Path) -> Result<Self> {
        let mut child = Command::new(binary)
            .args(["--addr", "127.0.0.1:0", "--log", "warn", "--models"])
            .arg(models)
            .env("ORT_DYLIB_PATH", lib)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting preflight-serve")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .context("no `listening on` line")?
            .to_owned();
        Ok(Self { child, url })
    }

    pub(crate) fn wait_ready(&self, limit: Duration) -> Result<()> {
        let addr = self.url.trim_start_matches("http://");
        let started = Instant::now();
        while started.elapsed() < limit {
            if http_status(addr, "/v2/health/ready") == Some(200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{} not ready within {limit:?}", self.url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of a plain HTTP/1.1 GET; xtask keeps no HTTP client crate.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}
