//! What a verification tells as it goes, for the terminal: the plan, then
//! each suite of each model as it ends.

use std::sync::Arc;

use crate::report::SuiteReport;

#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The models are selected and the endpoint is up: this many suite
    /// reports are to come, from the endpoint `at` says.
    Planned { suites: usize, at: &'a str },
    /// One suite of one model ended.
    SuiteEnded {
        model: &'a str,
        version: u64,
        report: &'a SuiteReport,
    },
}

/// Told of every [`Event`], from any task.
pub type Progress = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// A progress that listens to nothing.
pub fn silent() -> Progress {
    Arc::new(|_| {})
}
