//! `junit.xml`, for CI's test view: a testsuite per model, a testcase per
//! check. A testcase's time is its suite's time shared among the suite's
//! checks, which judge the same evidence. Each testsuite carries the
//! target, the commit and every figure as properties, and the worst rows
//! with the curl that reproduces them as `system-out`. An aborted run is one
//! testcase in error, carrying why.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use crate::human;
use crate::report::{ModelReport, Report, SuiteReport, Verdict};

pub fn junit(report: &Report) -> Result<String, String> {
    let started = human::timestamp(&report.started_at);
    let host = hostname();
    let mut junit = quick_junit::Report::new("preflight");
    junit.set_time(Duration::from_secs_f64(
        report.duration_ms.max(0.0) / 1000.0,
    ));
    if let Some(at) = started {
        junit.set_timestamp(at);
    }
    let common = [
        Some(("target", report.target.clone())),
        Some(("protocol", report.protocol.clone())),
        Some(("repository", report.repository.clone())),
        report.commit.clone().map(|c| ("commit", c)),
        report.baseline.clone().map(|b| ("baseline", b)),
        Some(("preflight_version", report.preflight_version.clone())),
    ];
    let stamp = |suite: &mut TestSuite| {
        if let Some(at) = started {
            suite.set_timestamp(at);
        }
        suite.extra.insert("hostname".into(), host.as_str().into());
        suite.add_properties(
            common
                .iter()
                .flatten()
                .map(|(k, v)| Property::new(*k, v.as_str())),
        );
    };
    if let Some(aborted) = &report.aborted {
        let mut suite = TestSuite::new("preflight");
        stamp(&mut suite);
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status
            .set_message(aborted.error.as_str())
            .set_type(format!("aborted, exit code {}", aborted.exit_code))
            .set_description(aborted.error.as_str());
        let mut case = TestCase::new("verify", status);
        case.set_classname("preflight");
        suite.add_test_case(case);
        junit.add_test_suite(suite);
    }
    for model in &report.models {
        let mut suite = TestSuite::new(format!("{} {}", model.name, model.version));
        stamp(&mut suite);
        suite.set_time(Duration::from_secs_f64(
            model
                .suites
                .iter()
                .map(|s| s.duration_ms)
                .sum::<f64>()
                .max(0.0)
                / 1000.0,
        ));
        suite.add_properties(figures(model));
        let out = worst_rows(model);
        if !out.is_empty() {
            suite.set_system_out(out);
        }
        suite.add_test_cases(model.suites.iter().flat_map(|s| cases(model, s)));
        junit.add_test_suite(suite);
    }
    junit.to_string().map_err(|e| format!("junit.xml: {e}"))
}

/// A testcase per check of the suite.
fn cases<'a>(
    model: &'a ModelReport,
    suite: &'a SuiteReport,
) -> impl Iterator<Item = TestCase> + 'a {
    let share = suite.duration_ms.max(0.0) / 1000.0 / suite.checks.len().max(1) as f64;
    suite.checks.iter().map(move |check| {
        let status = match check.verdict {
            Verdict::Passed => TestCaseStatus::success(),
            Verdict::Failed => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status
                    .set_message(check.message.as_str())
                    .set_type(suite.suite.as_str())
                    .set_description(check.message.as_str());
                status
            }
            Verdict::Skipped => {
                let mut status = TestCaseStatus::skipped();
                status.set_message(check.message.as_str());
                if let Some(skip) = check.skip {
                    status.set_type(skip.as_str());
                }
                status
            }
        };
        let mut case = TestCase::new(check.name.as_str(), status);
        case.set_classname(format!("{}.{}", model.name, suite.suite))
            .set_time(Duration::from_secs_f64(share));
        case
    })
}

/// Every figure of every suite, `suite.metric`, and each limit beside it.
fn figures(model: &ModelReport) -> Vec<Property> {
    model
        .suites
        .iter()
        .flat_map(|s| {
            let metrics = s
                .metrics
                .iter()
                .map(move |(k, v)| Property::new(format!("{}.{k}", s.suite), v.to_string()));
            let limits = s.limits.iter().map(move |(k, l)| {
                Property::new(
                    format!("{}.{k}.{}", s.suite, l.label()),
                    l.value().to_string(),
                )
            });
            metrics.chain(limits)
        })
        .collect()
}

/// Parity's worst rows of the model, with their inputs and curl.
fn worst_rows(model: &ModelReport) -> String {
    let mut out = String::new();
    for suite in &model.suites {
        for key in ["batch_worst_rows", "single_worst_rows"] {
            let Some(rows) = suite.details.get(key).and_then(|v| v.as_array()) else {
                continue;
            };
            for row in rows {
                out.push_str(&format!(
                    "{} row {}: '{}' served {}, expected {}\ninputs: {}\n{}\n\n",
                    suite.suite,
                    row["id"],
                    row["output"].as_str().unwrap_or_default(),
                    row["served"],
                    row["expected"],
                    row["inputs"],
                    row["curl"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    out
}

/// The machine's name, as CI's test view shows it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
