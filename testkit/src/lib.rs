//! Starting Preflight's binaries from tests and tools: `preflight-serve`
//! and `preflight-faulty` print `listening on http://ADDR` as their first
//! line on standard output once bound (and `preflight-serve` with
//! `--grpc-addr` `listening on grpc://ADDR` in the same write); [`Listening`]
//! reads them, polls
//! readiness, and stops the process when dropped, however the caller ends.
//! Also [`fuzz_inputs`], the fuzz corpora that the tests of two crates replay.
//!
//! Standard library only, and it links none of the workspace's crates, so
//! every test crate can use it without linking the server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The prefix of the first line a Preflight server prints.
pub const LISTENING: &str = "listening on ";

/// A child process that said where it listens; killed and reaped on drop.
#[derive(Debug)]
pub struct Listening {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The gRPC service's `HOST:PORT`, where the process serves one.
    pub grpc: Option<String>,
}

/// The prefix of the line that says where the gRPC service listens.
pub const LISTENING_GRPC: &str = "listening on grpc://";

impl Listening {
    /// Starts `command` with its standard output piped and reads its first
    /// line. Standard error goes where the command sends it.
    pub fn start(mut command: Command) -> Result<Self, String> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{program}: cannot start it: {e}"))?;
        let stdout = child.stdout.take();
        let (mut line, mut grpc) = (String::new(), None);
        let read = stdout.map(|out| {
            let mut reader = BufReader::new(out);
            let read = reader.read_line(&mut line);
            // Written in the same write as the first line, so read with it.
            let rest = String::from_utf8_lossy(reader.buffer());
            grpc = (rest.lines().next())
                .and_then(|l| l.trim().strip_prefix(LISTENING_GRPC))
                .map(str::to_owned);
            read
        });
        let url = line.trim().strip_prefix(LISTENING).map(str::to_owned);
        match (read, url) {
            (Some(Ok(_)), Some(url)) => Ok(Self { child, url, grpc }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "{program}: its first line is not `{LISTENING}URL`: {line:?}"
                ))
            }
        }
    }

    /// Starts `binary` with `args`, its standard error discarded.
    pub fn spawn(binary: &Path, args: &[&str]) -> Result<Self, String> {
        let mut command = Command::new(binary);
        command.args(args).stderr(Stdio::null());
        Self::start(command)
    }

    /// `HOST:PORT` of the URL.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// The process id, for signals.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child, for a test that stops it itself.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Polls `GET /v2/health/ready` until it answers 200, for at most `limit`.
    pub fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if status(self.addr(), "/v2/health/ready") == Some(200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("{} was not ready within {limit:?}", self.url))
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of a plain HTTP/1.1 `GET` to `addr` (`HOST:PORT`), or `None`
/// when nothing answers within five seconds.
pub fn status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
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

/// The files of `fuzz/<kind>/<target>/` in the workspace (`kind` is
/// `corpus` or `regressions`), sorted; none when the folder does not exist.
/// The fuzz crate is outside the workspace: the tests that replay its inputs
/// find them here.
pub fn fuzz_inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_does_not_say_where_it_listens_is_an_error_naming_its_line() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo hello"]);
        let error = Listening::start(command).err().unwrap_or_default();
        assert!(error.contains("\"hello\\n\""), "{error}");
    }

    #[test]
    fn the_url_is_read_from_the_first_line() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo 'listening on http://127.0.0.1:9'; sleep 5"]);
        let listening = Listening::start(command).map_err(|e| e.to_string());
        let listening = listening.as_ref().map(|l| (l.url.as_str(), l.addr()));
        assert_eq!(listening, Ok(("http://127.0.0.1:9", "127.0.0.1:9")));
    }
}
