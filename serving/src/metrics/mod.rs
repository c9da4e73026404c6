//! Service metrics: requests, rows, fallbacks and latency per model and
//! version, and what the monitor, admission, the log and the process show;
//! exposed on `/metrics` in the OpenMetrics text format (`exposition.rs`).
//!
//! Every served model version carries its own [`Counters`], atomics that a
//! request updates without taking a lock. A request that reaches no loaded
//! version counts in one unlabelled set, so model names a client makes up
//! never add series. A scrape reads the counters as they are; a request
//! recorded during it may show in some series and not yet in others, but a
//! histogram's buckets never exceed its count.

pub(crate) mod connections;
pub(crate) mod counters;
mod encode;
mod exposition;
mod monitoring;
mod process;
mod routing;
mod versions;

pub(crate) use exposition::{Scraped, render};
