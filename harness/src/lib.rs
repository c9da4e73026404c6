//! `preflight`: derives the suites ([`Suite`]) from each bundle's contract,
//! runs them against an Open Inference Protocol endpoint, and writes release
//! reports.
//!
//! The harness only speaks HTTP to the endpoint; it never links the server.
//! It runs ONNX Runtime itself only for the `unit` suite's artifact parity.

mod artifact;
pub mod check;
pub mod client;
pub mod container;
pub mod diff;
pub mod exit;
pub mod figures;
pub mod gate;
mod html;
pub mod human;
mod last_release;
pub mod merge;
pub mod output;
pub mod progress;
pub mod report;
pub mod shard;
pub mod slots;
mod splits;
pub mod suites;
pub mod target;
pub mod terminal;
pub mod verify;

pub use gate::Policy;
pub use report::{Check, LatencyRun, ModelReport, Report, Skip, SuiteReport, Verdict};
pub use shard::Shard;
pub use suites::Suite;
pub use target::{Protocol, TargetOptions, TargetSpec};
pub use verify::{VerifyConfig, VerifyError, aborted, verify};
