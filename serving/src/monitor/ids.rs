//! Request ids for the requests that came without one.

use std::sync::atomic::{AtomicU64, Ordering};

/// Ids for requests that came without one: unique within this process, and
/// unlikely to repeat across its restarts.
#[derive(Debug)]
pub(super) struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    pub(super) fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // The start time and the process id, mixed: distinct per process.
        let seed = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
        Self {
            prefix: format!("{seed:016x}"),
            next: AtomicU64::new(1),
        }
    }

    pub(super) fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.prefix)
    }
}
