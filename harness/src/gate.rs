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
                if matches!(check.skip, Some(Skip::NoBaseline | Skip::NotCompared)) {
                    check.verdict = Verdict::Failed;
                    check.skip = None;
                    check.message = format!("--require baseline: {}", check.message);
                }
            }
        }
        let kind = Suite::all().iter().find(|s| s.name() == suite.suite);
        if let Some(&kind) = kind.filter(|&&k| self.requires(Requirement::Suite(k))) {
            // Judged when a check that carries its purpose was.
            let purpose = kind.purpose();
            let carries = |c: &&Check| purpose.is_empty() || purpose.contains(&c.name.as_str());
            let judged_nothing = suite
                .checks
                .iter()
                .filter(carries)
                .all(|c| c.verdict == Verdict::Skipped);
            let nothing_applies = suite
                .checks
                .iter()
                .all(|c| c.skip == Some(Skip::NotApplicable));
            if judged_nothing && !nothing_applies {
                let reasons: Vec<&str> = suite
                    .checks
                    .iter()
                    .filter(carries)
                    .map(|c| c.message.as_str())
                    .collect();
                let what = if purpose.is_empty() {
                    "the suite judged nothing".to_owned()
                } else {
                    format!("the suite did not judge {}", purpose.join(" or "))
                };
                suite.checks.push(Check::new(
                    "required",
                    false,
                    format!("--require {}: {what}: {}", suite.suite, reasons.join("; ")),
                ));
            }
        }
        suite.verdict = Verdict::of(suite.checks.iter().map(|c| c.verdict));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ModelReport, REPORT_FORMAT};

    fn report(suites: Vec<SuiteReport>) -> Report {
        Report {
            format: REPORT_FORMAT,
            preflight_version: String::new(),
            verdict: Verdict::Passed,
            repository: String::new(),
            target: String::new(),
            protocol: "REST".to_owned(),
            required: Vec::new(),
            started_at: String::new(),
            duration_ms: 0.0,
            shard: None,
            commit: None,
            baseline: None,
            aborted: None,
            latency_runs: Vec::new(),
            models: vec![ModelReport {
                name: "eta-x".to_owned(),
                version: 2,
                verdict: Verdict::Passed,
                warnings: Vec::new(),
                suites,
            }],
        }
    }

    fn policy(values: &[&str]) -> Policy {
        let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        Policy::new(&values, Suite::all()).unwrap_or_default()
    }

    #[test]
    fn a_missing_baseline_figure_fails_only_under_the_baseline_requirement() {
        let quality = || {
            SuiteReport::new(
                "quality",
                vec![
                    Check::new("mae", true, "mae 4.1"),
                    Check::skipped("against the baseline", Skip::NoBaseline, "no figure"),
                ],
            )
        };
        let mut lenient = report(vec![quality()]);
        policy(&[]).apply(&mut lenient);
        assert_eq!(lenient.verdict, Verdict::Passed);

        let mut strict = report(vec![quality()]);
        policy(&["baseline"]).apply(&mut strict);
        assert_eq!(strict.verdict, Verdict::Failed);
        let check = &strict.models[0].suites[0].checks[1];
        assert_eq!(
            (check.verdict, check.message.as_str()),
            (Verdict::Failed, "--require baseline: no figure")
        );
    }

    #[test]
    fn a_required_suite_that_judged_nothing_fails_unless_nothing_applies() {
        let skipped =
            |skip| SuiteReport::new("nullable", vec![Check::skipped("nullable", skip, "x")]);
        let mut missing = report(vec![skipped(Skip::Missing)]);
        policy(&["suites"]).apply(&mut missing);
        assert_eq!(missing.verdict, Verdict::Failed);

        let mut not_applicable = report(vec![skipped(Skip::NotApplicable)]);
        policy(&["strict"]).apply(&mut not_applicable);
        assert_ne!(not_applicable.verdict, Verdict::Failed);
    }

    #[test]
    fn a_required_unit_suite_is_judged_only_by_its_artifact_parity() {
        let unit = |parity: Check| {
            SuiteReport::new(
                "unit",
                vec![
                    Check::new("fallback covers the inputs", true, "every input has a term"),
                    parity,
                ],
            )
        };
        let mut unjudged = report(vec![unit(Check::skipped(
            "artifact parity",
            Skip::Missing,
            "needs samples.jsonl",
        ))]);
        policy(&["strict"]).apply(&mut unjudged);
        assert_eq!(unjudged.verdict, Verdict::Failed);
        let required = unjudged.models[0].suites[0].checks.last().expect("a check");
        assert!(
            required
                .message
                .contains("the suite did not judge artifact parity: needs samples.jsonl"),
            "{}",
            required.message
        );

        let mut judged = report(vec![unit(Check::new("artifact parity", true, "500 rows"))]);
        policy(&["strict"]).apply(&mut judged);
        assert_eq!(judged.verdict, Verdict::Passed);
    }

    #[test]
    fn what_the_gate_cannot_require_is_named() {
        let error = Policy::new(&["vibes".to_owned()], Suite::all()).err();
        assert!(error.is_some_and(|e| e.contains("'vibes' is not something")));
        let error = Policy::new(&["quality".to_owned()], &[Suite::Unit]).err();
        assert!(error.is_some_and(|e| e.contains("the quality suite does not run")));
    }
}
