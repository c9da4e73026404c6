//! How connections end when they end badly, and what stopping does to the
//! requests still arriving: counted for `/metrics`
//! (`preflight_connections_closed_total{reason}`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a connection, or a request on it, ended without a normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// A request head that is not HTTP (a TLS handshake on the plain port,
    /// a bad method, header or version): answered 400 by the HTTP layer.
    MalformedHead,
    /// A request head over the HTTP layer's size limit: answered 431.
    HeadTooLarge,
    /// A request head not whole within `--header-timeout-seconds`: closed.
    HeadTimeout,
    /// A body that could not be read (a broken chunked encoding, a client
    /// gone mid-body): answered 400 where the request had reached a route.
    BodyUnreadable,
    /// A body not whole within `--body-timeout-seconds`, or pausing longer
    /// than `--body-idle-seconds`: answered 408.
    BodyTimeout,
    /// A body over `--max-body-bytes`: answered 413 once the rest was read
    /// and discarded, within a bound.
    BodyTooLarge,
    /// A body still arriving when the drain ended: answered 503.
    Stopping,
    /// Any other end the HTTP layer reports as an error: closed.
    Other,
}

impl Closed {
    pub const ALL: [Closed; 8] = [
        Closed::MalformedHead,
        Closed::HeadTooLarge,
        Closed::HeadTimeout,
        Closed::BodyUnreadable,
        Closed::BodyTimeout,
        Closed::BodyTooLarge,
        Closed::Stopping,
        Closed::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Closed::MalformedHead => "malformed_head",
            Closed::HeadTooLarge => "head_too_large",
            Closed::HeadTimeout => "head_timeout",
            Closed::BodyUnreadable => "body_unreadable",
            Closed::BodyTimeout => "body_timeout",
            Closed::BodyTooLarge => "body_too_large",
            Closed::Stopping => "stopping",
            Closed::Other => "other",
        }
    }

    /// Why the HTTP layer ended a connection with `error`; `None` for a
    /// client that simply went away between requests.
    pub fn of(error: &hyper::Error) -> Option<Closed> {
        if error.is_parse_too_large() {
            Some(Closed::HeadTooLarge)
        } else if error.is_parse() {
            Some(Closed::MalformedHead)
        } else if error.is_timeout() {
            Some(Closed::HeadTimeout)
        } else if error.is_incomplete_message() || error.is_canceled() || error.is_closed() {
            // Gone mid-request, or between requests: nothing to answer.
            None
        } else {
            Some(Closed::Other)
        }
    }
}

/// The counts, one per reason.
#[derive(Debug, Default)]
pub struct Connections {
    counts: [AtomicU64; Closed::ALL.len()],
}

impl Connections {
    pub fn count(&self, why: Closed) {
        self.counts[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, why: Closed) -> u64 {
        self.counts[why as usize].load(Ordering::Relaxed)
    }
}
