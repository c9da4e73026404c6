//! Logs that never take serving down.
//!
//! Lines go through a bounded queue to a thread of their own, which writes
//! them to standard error. A request never waits on the log: when the queue
//! is full (a slow pipe, a stalled collector), the line is dropped. A line
//! that cannot be written (a full disk, a closed pipe) is dropped too. Both
//! are counted, and `/metrics` shows the count.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines the queue holds before it drops.
const QUEUED_LINES: usize = 16_384;

/// The log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// The running log: flushed when dropped, at the end of `main`.
#[derive(Debug)]
pub struct Logging {
    pub dropped: DroppedLines,
    _worker: WorkerGuard,
}

/// How many log lines were lost, and why.
#[derive(Debug, Clone)]
pub struct DroppedLines {
    queue_full: ErrorCounter,
    unwritable: Arc<AtomicU64>,
}

impl DroppedLines {
    /// Lines dropped because the queue was full.
    pub fn queue_full(&self) -> u64 {
        self.queue_full.dropped_lines() as u64
    }

    /// Lines the writer could not write.
    pub fn unwritable(&self) -> u64 {
        self.unwritable.load(Ordering::Relaxed)
    }
}

impl Logging {
    /// Starts logging to standard error, filtered by `filter`, for the whole
    /// process.
    pub fn init(format: LogFormat, filter: EnvFilter) -> Self {
        let unwritable = Arc::new(AtomicU64::new(0));
        let stderr = Forgiving {
            inner: std::io::stderr(),
            failed: Arc::clone(&unwritable),
        };
        let (writer, worker) = NonBlockingBuilder::default()
            .buffered_lines_limit(QUEUED_LINES)
            .lossy(true)
            .thread_name("preflight-log")
            .finish(stderr);
        let dropped = DroppedLines {
            queue_full: writer.error_counter(),
            unwritable,
        };
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .log_internal_errors(false);
        match format {
            LogFormat::Text => subscriber.init(),
            LogFormat::Json => subscriber.json().flatten_event(true).init(),
        }
        Logging {
            dropped,
            _worker: worker,
        }
    }
}

/// A writer whose failures are counted, never returned: the log thread
/// goes on with the next line.
struct Forgiving<W> {
    inner: W,
    failed: Arc<AtomicU64>,
}

impl<W: Write> Write for Forgiving<W> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        if self.inner.write_all(line).is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.inner.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that fails as a full disk does.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(28))
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(28))
        }
    }

    #[test]
    fn a_line_that_cannot_be_written_is_counted_not_returned() {
        let failed = Arc::new(AtomicU64::new(0));
        let mut writer = Forgiving {
            inner: Full,
            failed: Arc::clone(&failed),
        };
        assert_eq!(writer.write(b"one\n").expect("never an error"), 4);
        writer.write_all(b"two\n").expect("never an error");
        writer.flush().expect("never an error");
        assert_eq!(failed.load(Ordering::Relaxed), 2);
    }
}
