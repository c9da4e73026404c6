//! The gate's policy: which skips fail the release (`--require`).
//!
//! A skip is never a pass, and every report lists each one with its reason;
//! the policy decides which of them the release may not ship with. It is
//! applied once, to the finished report, so every report format shows the
//! same verdicts.

use std::collections::BTreeSet;

use crate::report::{Check, Report, Skip, SuiteReport, Verdict};
use crate::suites::Suite;

/// One thing the gate requires, as written after `--require`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Requirement {
    /// The suite judges every verified model: a suite that skipped all of
    /// its checks fails (unless nothing applies, such as `nullable` for a
    /// model without a nullable input).
    Suite(Suite),
    /// Every comparison with the last release is made: `--baseline` is
    /// given, and a check it cannot serve with a figure fails. A model the
    /// baseline report does not have is new, and is listed, not failed.
    Baseline,
    /// No manifest has a key the format does not know: such a key is an
    /// error naming its file and line, instead of a warning.
    Manifest,
}

impl Requirement {
    /// `strict`: every suite that runs, the baseline and clean manifests.
    pub const STRICT: &str = "strict";
    /// `suites`: every suite that runs.
    pub const SUITES: &str = "suites";

    /// Parses one `--require` value; `strict` and `suites` expand to several.
    pub fn parse(value: &str) -> Result<Vec<Requirement>, String> {
        let value = value.trim();
        let suites = || Suite::all().iter().map(|&s| Requirement::Suite(s));
        match value {
            Self::STRICT => {
                let mut all: Vec<_> = suites().collect();
                all.extend([Requirement::Baseline, Requirement::Manifest]);
                Ok(all)
            }
            Self::SUITES => Ok(suites().collect()),
            "baseline" => Ok(vec![Requirement::Baseline]),
            "manifest" => Ok(vec![Requirement::Manifest]),
            _ => match Suite::all().iter().find(|s| s.name() == value) {
                Some(&suite) => Ok(vec![Requirement::Suite(suite)]),
                None => Err(format!(
                    "'{value}' is not something the gate can require: give strict, suites, \
                    baseline, manifest or a suite ({})",
                    Suite::all()
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            },
        }
    }
}

/// What the gate requires of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    required: BTreeSet<Requirement>,
    /// The values as given, for the report.
    given: Vec<String>,
}

impl Policy {
    /// The policy of the `--require` values, for a run of `suites`. `strict`
    /// and `suites` require only the suites that run; naming a suite that does not run
    /// is an error, since it could never be judged.
    pub fn new(values: &[String], suites: &[Suite]) -> Result<Self, String> {
        let mut required = BTreeSet::new();
        for value in values {
            let strict = [Requirement::STRICT, Requirement::SUITES].contains(&value.trim());
            for requirement in Requirement::parse(value)? {
                match requirement {
                    Requirement::Suite(suite) if !suites.contains(&suite) => {
                        if !strict {
                            return Err(format!(
                                "--require {suite}: the {suite} suite does not run (--suites)",
                                suite = suite.name()
                            ));
                        }
                    }
                    requirement => {
                        required.insert(requirement);
                    }
                }
            }
        }
        let given = values.iter().map(|v| v.trim().to_owned()).collect();
        Ok(Self { required, given })
    }

    pub fn requires(&self, requirement: Requirement) -> bool {
        self.required.contains(&requirement)
    }

    /// `--require` as given, which the report records; empty for none.
    pub fn describe(&self) -> Vec<String> {
        self.given.clone()
    }

    /// Fails the skips this policy forbids, and the verdicts above them.
    pub fn apply(&self, report: &mut Report) {
        for model in &mut report.models {
            for suite in &mut model.suites {
                self.apply_to_suite(suite);
            }
            model.verdict = Verdict::of(model.suites.iter().map(|s| s.verdict));
        }
        report.verdict = Verdict::of(report.models.iter().map(|m| m.verdict));
    }

    fn apply_to_suite(&self, suite: &mut SuiteReport) {
        if self.requires(Requirement::Baseline) {
            for check in &mut suite.checks {
                if check.skip == Some(Skip::NoBaseline) {
                    check.verdict = Verdict::Failed;
                    check.skip = None;
                    check.message = format!("--require baseline: {}", check.message);
                }
            }
        }
        let required = Suite::all()
            .iter()
            .any(|&s| s.name() == suite.suite && self.requires(Requirement::Suite(s)));
        let judged_nothing = suite.checks.iter().all(|c| c.verdict == Verdict::Skipped);
        let nothing_applies = suite
            .checks
            .iter()
            .all(|c| c.skip == Some(Skip::NotApplicable));
        if required && judged_nothing && !nothing_applies {
            let reasons: Vec<&str> = suite.checks.iter().map(|c| c.message.as_str()).collect();
            suite.checks.push(Check::new(
                "required",
                false,
                format!(
                    "--require {}: the suite judged nothing: {}",
                    suite.suite,
                    reasons.join("; ")
                ),
            ));
        }
        suite.verdict = Verdict::of(suite.checks.iter().map(|c| c.verdict));
    }
}
