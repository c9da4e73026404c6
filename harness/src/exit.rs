//! The exit codes of `preflight`, in one place.

/// Every suite of every model passed or was skipped.
pub const PASSED: u8 = 0;
/// At least one suite failed.
pub const FAILED: u8 = 1;
/// The command line or a bundle is wrong: nothing was verified.
pub const USAGE: u8 = 2;
/// The endpoint could not be reached, started, or stopped answering.
pub const ENDPOINT: u8 = 3;
