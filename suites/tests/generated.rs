//! `cargo test` over the fixtures, one test per suite and defect:
//!
//! - `parity::eta-madrid` and so on: every clean bundle passes every suite;
//! - `defect::imputer-skipped` and so on: every defect of the catalogue fails
//!   exactly the suites its entry names, each with the reason it names;
//! - `grpc::defect::slow-1-in-20` and so on: every serving-side defect, the
//!   same again with the suites' inference over gRPC.
//!
//! The endpoints are real: `preflight-serve` on the fixtures, and for the
//! serving-side defects `preflight-faulty` in front of it. Both binaries are
//! built by `cargo test --workspace`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libtest_mimic::{Arguments, Failed, Trial};
use preflight_bundle::Repository;
use preflight_harness::{
    Policy, Protocol, Report, Shard, Skip, Suite, TargetOptions, TargetSpec, Verdict, VerifyConfig,
    verify,
};
use preflight_testkit::Listening;
use serde::Deserialize;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A binary of the workspace, built beside this test.
fn binary(name: &str) -> Result<PathBuf, Failed> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "{name} is not built; run `cargo xtask test` or `cargo build --workspace` first"
            )
            .into()
        })
}

#[derive(Debug, Deserialize)]
struct Catalogue {
    defect: Vec<Defect>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defect {
    name: String,
    lives_in: LivesIn,
    model: String,
    #[serde(default)]
    baseline: Option<String>,
    /// The folder of `fixtures/defects/bundles` the defect's bundles are
    /// in, when another entry's: by default its name.
    #[serde(default)]
    bundles: Option<String>,
    /// The model's last release lives apart: the repository verified holds
    /// only its highest version, and the versions below are brought into
    /// the run from a repository of their own (`--baseline-models`).
    #[serde(default)]
    apart: bool,
    /// What `preflight-faulty --fault` injects, which names its own faults.
    #[serde(default)]
    fault: Option<String>,
    fails: Vec<Suite>,
    /// Those of `fails` whose verdict is a timing comparison, each with the
    /// check that must fail it: a busy machine may leave that very check
    /// inconclusive (skipped, never passed).
    #[serde(default)]
    timed: BTreeMap<Suite, String>,
    /// For each of `fails`, a phrase of a failing check's explanation that
    /// only the defect's cause produces, or several, each to be found.
    #[serde(default)]
    reasons: BTreeMap<Suite, Phrases>,
    /// Suites that must pass, not merely be skipped: a change that must be
    /// judged and let through.
    #[serde(default)]
    passes: Vec<Suite>,
    /// The gate's policy for this run (`--require`); none by default.
    #[serde(default)]
    require: Vec<String>,
    /// What happened, as it happens in real life (for the reader).
    #[allow(dead_code)]
    description: String,
}

/// A reason: one phrase, or a list of phrases that must each be found.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Phrases {
    One(String),
    All(Vec<String>),
}

impl Phrases {
    fn all(&self) -> &[String] {
        match self {
            Phrases::One(one) => std::slice::from_ref(one),
            Phrases::All(all) => all,
        }
    }
}

impl Defect {
    /// What the entry itself gets wrong: a failing suite without a reason,
    /// a reason or a timed check for a suite that does not fail.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for suite in &self.fails {
            match self.reasons.get(suite).map(Phrases::all) {
                Some(all) if !all.is_empty() && all.iter().all(|r| !r.trim().is_empty()) => {}
                _ => problems.push(format!("'{suite}' fails without a reason")),
            }
        }
        for suite in self.passes.iter().filter(|s| self.fails.contains(s)) {
            problems.push(format!("'{suite}' both fails and passes"));
        }
        let listed = |suite: &Suite| self.fails.contains(suite);
        for suite in self.reasons.keys().chain(self.timed.keys()) {
            if !listed(suite) {
                problems.push(format!(
                    "'{suite}' has a reason or is timed, but is not in fails"
                ));
            }
        }
        problems
    }

    /// The suites the trial runs: every one but latency, which runs where
    /// the entry names it. Elsewhere the defect leaves timing as the clean
    /// model's, whose latency the clean trials judge, and a latency run
    /// would measure only the machine, for 4 to 5 s a trial.
    fn suites(&self) -> Vec<Suite> {
        let named = |suite: &Suite| self.fails.contains(suite) || self.passes.contains(suite);
        (Suite::all().iter().copied())
            .filter(|s| *s != Suite::Latency || named(s))
            .collect()
    }
}

/// Where a defect of the catalogue is.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LivesIn {
    /// In `fixtures/defects/bundles/NAME`: what the artifact computes.
    Bundle,
    /// In a proxy in front of a correct server: `preflight-faulty`.
    Endpoint,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The repository token of the servers behind serving-side defects.
const DEFECT_TOKEN: &str = "defect-catalogue-token";

/// What a trial verifies: its target, and the gRPC service the suites'
/// inference goes over (`--protocol grpc`), when not REST.
struct Endpoint {
    target: TargetSpec,
    grpc: Option<String>,
}

impl From<TargetSpec> for Endpoint {
    fn from(target: TargetSpec) -> Self {
        Self { target, grpc: None }
    }
}

/// What a trial verifies at `models` on `endpoint`: every model, every
/// suite, no baseline, the default policy.
fn config(models: &Path, Endpoint { target, grpc }: Endpoint) -> Result<VerifyConfig, Failed> {
    // A serving-side defect's server takes the harness's token, as a
    // staging server would, so that the rollout suite runs against it.
    let repository_token = matches!(target, TargetSpec::Url(_)).then(|| DEFECT_TOKEN.to_owned());
    Ok(VerifyConfig {
        models: models.to_path_buf(),
        target,
        baseline: None,
        baseline_target: None,
        baseline_models: None,
        out: PathBuf::new(),
        only: Vec::new(),
        shard: None,
        suites: Suite::all().to_vec(),
        jobs: 2,
        policy: Policy::default(),
        target_options: TargetOptions {
            serve_bin: Some(binary("preflight-serve")?),
            repository_token,
            protocol: if grpc.is_some() {
                Protocol::Grpc
            } else {
                Protocol::Rest
            },
            grpc_addr: grpc,
            ..TargetOptions::default()
        },
    })
}

/// Runs `config`, its report files written to a folder of their own.
fn run(mut config: VerifyConfig) -> Result<Report, Failed> {
    let out = tempfile::tempdir().map_err(|e| e.to_string())?;
    config.out = out.path().to_path_buf();
    runtime()
        .block_on(verify(&config, &preflight_harness::progress::silent()))
        .map_err(|e| Failed::from(e.to_string()))
}

/// The clean repository verified once, shared by every clean trial.
fn clean_report() -> Result<&'static Report, Failed> {
    static REPORT: OnceLock<Result<Report, String>> = OnceLock::new();
    REPORT
        .get_or_init(|| {
            config(&root().join("fixtures/models"), TargetSpec::Process.into())
                .and_then(run)
                .map_err(|e| e.message().unwrap_or("verify failed").to_owned())
        })
        .as_ref()
        .map_err(|e| Failed::from(e.clone()))
}

fn clean(suite: Suite, model: &str) -> Result<(), Failed> {
    let report = clean_report()?;
    let m = report
        .model(model)
        .ok_or_else(|| format!("no report for {model}"))?;
    let s = m
        .suite(suite.name())
        .ok_or_else(|| format!("{model}: no {} suite", suite.name()))?;
    match s.verdict {
        Verdict::Passed => Ok(()),
        Verdict::Failed => Err(format!("false alarm: {}", s.failures()).into()),
        // A suite that has nothing to judge for this bundle, as rollout
        // without an earlier version, says so; it is not a failure.
        Verdict::Skipped if s.checks.iter().all(|c| c.skip == Some(Skip::NotApplicable)) => Ok(()),
        Verdict::Skipped => Err(format!(
            "skipped on a clean bundle: {}",
            s.checks
                .iter()
                .map(|c| c.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        )
        .into()),
    }
}

fn start(binary: &Path, args: &[&str]) -> Result<Listening, Failed> {
    Ok(Listening::spawn(binary, args)?)
}

/// The report of one version of a clean model, as a baseline.
fn baseline_report(spec: &str, dir: &Path) -> Result<PathBuf, Failed> {
    let (model, version) = spec
        .split_once('/')
        .ok_or("baseline must be MODEL/VERSION")?;
    let repo = dir.join("baseline-repository");
    let bundle = repo.join(model).join(version);
    std::fs::create_dir_all(bundle.parent().ok_or("path")?).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(
        root().join("fixtures/models").join(model).join(version),
        &bundle,
    )
    .map_err(|e| e.to_string())?;
    let report = run(config(&repo, TargetSpec::Process.into())?)?;
    let path = dir.join("baseline.json");
    std::fs::write(
        &path,
        serde_json::to_string(&report).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    Ok(path)
}

/// `model` of the repository `bundles` split in two under `dir`: a
/// repository of its highest version, and one of the versions below.
fn apart(bundles: &Path, model: &str, dir: &Path) -> Result<(PathBuf, PathBuf), Failed> {
    let mut versions: Vec<u64> = std::fs::read_dir(bundles.join(model))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let Some((highest, below)) = versions.split_last() else {
        return Err(format!("{model}: no version in {}", bundles.display()).into());
    };
    let (candidate, last) = (dir.join("candidate"), dir.join("last-release"));
    for (repo, version) in below
        .iter()
        .map(|v| (&last, v))
        .chain([(&candidate, highest)])
    {
        let link = repo.join(model).join(version.to_string());
        std::fs::create_dir_all(repo.join(model)).map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink(bundles.join(model).join(version.to_string()), &link)
            .map_err(|e| e.to_string())?;
    }
    Ok((candidate, last))
}

/// Runs `d` and judges the report; a serving-side defect's inference goes
/// over `protocol` (`preflight-faulty --grpc-addr` is the same fault in
/// front of the gRPC service).
fn defect(d: &Defect, protocol: Protocol) -> Result<(), Failed> {
    let problems = d.problems();
    if !problems.is_empty() {
        return Err(format!("the catalogue entry is wrong: {}", problems.join("; ")).into());
    }
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let baseline = d
        .baseline
        .as_deref()
        .map(|b| baseline_report(b, tmp.path()))
        .transpose()?;
    let policy = Policy::new(&d.require, Suite::all()).map_err(Failed::from)?;
    // A serving-side defect's server and proxy stop when `_serving` drops.
    let (config, _serving) = match d.lives_in {
        LivesIn::Bundle => {
            let bundles = root()
                .join("fixtures/defects/bundles")
                .join(d.bundles.as_deref().unwrap_or(&d.name));
            let (models, last_release) = if d.apart {
                let (candidate, last) = apart(&bundles, &d.model, tmp.path())?;
                (candidate, Some(last))
            } else {
                (bundles, None)
            };
            let config = VerifyConfig {
                baseline_models: last_release,
                ..config(&models, TargetSpec::Process.into())?
            };
            (config, None)
        }
        LivesIn::Endpoint => {
            let models = root().join("fixtures/models");
            let over_grpc = protocol == Protocol::Grpc;
            let proxy_args: &[&str] = match over_grpc {
                true => &["--grpc-addr", "127.0.0.1:0"],
                false => &[],
            };
            let (server, proxy) = faulty_endpoint(d, &models, proxy_args)?;
            let grpc = over_grpc
                .then(|| proxy.grpc.clone().ok_or("preflight-faulty gave no gRPC"))
                .transpose()?;
            let endpoint = Endpoint {
                target: TargetSpec::Url(proxy.url.clone()),
                grpc,
            };
            (config(&models, endpoint)?, Some((server, proxy)))
        }
    };
    let report = run(VerifyConfig {
        only: vec![d.model.clone()],
        baseline,
        policy,
        suites: d.suites(),
        ..config
    })?;
    judge(d, &report)
}

/// Whether `report` says what the catalogue says of `d`: every suite of
/// `fails` failed, with its reasons, unless its decisive timed check was
/// inconclusive; every suite of `passes` passed; nothing else failed.
fn judge(d: &Defect, report: &Report) -> Result<(), Failed> {
    let (fails, passes) = (&d.fails, &d.passes);
    let model = report
        .model(&d.model)
        .ok_or_else(|| format!("no report for {}", d.model))?;
    let failed: BTreeSet<&str> = model
        .suites
        .iter()
        .filter(|s| s.verdict == Verdict::Failed)
        .map(|s| s.suite.as_str())
        .collect();
    let expected: BTreeSet<&str> = fails.iter().map(|s| s.name()).collect();
    let mut problems = Vec::new();
    for missed in expected.difference(&failed) {
        let suite = model.suite(missed);
        // The suite's verdict is "passed" when its budgets passed; the
        // comparison that should have failed it may be a skipped check, but
        // only that one excuses the miss.
        let decisive = d
            .timed
            .iter()
            .find(|(t, _)| t.name() == *missed)
            .and_then(|(_, check)| suite?.checks.iter().find(|c| c.name == *check));
        if let Some(check) = decisive.filter(|c| c.skip == Some(Skip::Inconclusive)) {
            // Never passed: the machine was too busy to tell. How often the
            // gate catches it on a quiet machine, `cargo xtask bench verdicts`
            // measures.
            eprintln!(
                "{}: excused: '{missed}' did not fail, its check '{}' being inconclusive on \
                 this machine: {}",
                d.name, check.name, check.message
            );
            continue;
        }
        let said = suite.map_or_else(
            || "it did not run".to_owned(),
            |s| {
                let checks: Vec<String> = s
                    .checks
                    .iter()
                    .map(|c| format!("{} {}: {}", c.verdict.as_str(), c.name, c.message))
                    .collect();
                format!("{}; {}", s.verdict.as_str(), checks.join("; "))
            },
        );
        problems.push(format!(
            "missed: '{missed}' should fail but did not: {said}"
        ));
    }
    for suite in passes {
        match model.suite(suite.name()) {
            Some(s) if s.verdict == Verdict::Passed => {}
            Some(s) => problems.push(format!(
                "'{suite}' should pass but was {}: {}",
                s.verdict.as_str(),
                s.checks
                    .iter()
                    .map(|c| format!("{} {}: {}", c.verdict.as_str(), c.name, c.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            None => problems.push(format!("'{suite}' should pass but did not run")),
        }
    }
    for alarm in failed.difference(&expected) {
        let suite = model.suite(alarm).map(|s| s.failures()).unwrap_or_default();
        problems.push(format!("false alarm: '{alarm}' failed: {suite}"));
    }
    let reasons = (d.reasons.iter())
        .filter(|(suite, _)| fails.contains(suite))
        .flat_map(|(suite, phrases)| phrases.all().iter().map(move |r| (suite, r)));
    for (suite, reason) in reasons {
        if !failed.contains(suite.name()) {
            continue;
        }
        let Some(report) = model.suite(suite.name()) else {
            continue;
        };
        // The explanation, not the check's name, must give the cause.
        let explained = report
            .checks
            .iter()
            .any(|c| c.verdict == Verdict::Failed && c.message.contains(reason.as_str()));
        if !explained {
            problems.push(format!(
                "'{suite}' failed without the reason '{reason}': {}",
                report.failures()
            ));
        }
        if let Some(said) = unspecific(*suite, &d.model, reason)? {
            problems.push(format!(
                "the reason '{reason}' for '{suite}' does not name a cause: {said}; this run \
                 failed with '{}'",
                report.failures()
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

/// The endpoint of a serving-side defect: `preflight-serve` on `models`
/// with the catalogue's token, and `preflight-faulty` with the defect's
/// fault in front of it, given `proxy_args` too; both stop when dropped.
fn faulty_endpoint(
    d: &Defect,
    models: &Path,
    proxy_args: &[&str],
) -> Result<(Listening, Listening), Failed> {
    let server = start(
        &binary("preflight-serve")?,
        &[
            "--addr",
            "127.0.0.1:0",
            "--models",
            &models.display().to_string(),
            "--repository-token",
            DEFECT_TOKEN,
        ],
    )?;
    let fault = d
        .fault
        .as_deref()
        .ok_or("an endpoint defect needs a fault")?;
    let mut args = vec!["--upstream", &server.url, "--fault", fault];
    args.extend_from_slice(proxy_args);
    let proxy = start(&binary("preflight-faulty")?, &args)?;
    Ok((server, proxy))
}

/// Where the clean run of `model` says `reason` too, in `suite`'s check
/// names or its explanations: a phrase any run may hold names no cause.
fn unspecific(suite: Suite, model: &str, reason: &str) -> Result<Option<String>, Failed> {
    let clean = clean_report()?;
    let checks = clean
        .model(model)
        .and_then(|m| m.suite(suite.name()))
        .map(|s| s.checks.as_slice())
        .unwrap_or_default();
    Ok(checks
        .iter()
        .find(|c| c.name.contains(reason) || c.message.contains(reason))
        .map(|c| format!("the clean run of {model} says '{}: {}'", c.name, c.message)))
}

/// The fixtures verified as four shards and merged give the same models,
/// suites, checks and verdicts as the unsharded run. Latency verdicts and the
/// fallback's timing are measurements of the machine at that moment, so for
/// them the checks must match by name and the suites by verdict only.
fn merged_shards() -> Result<(), Failed> {
    let whole = clean_report()?;
    let mut reports = Vec::new();
    for k in 1..=4 {
        let shard = Shard::parse(&format!("{k}/4")).map_err(Failed::from)?;
        let report = run(VerifyConfig {
            shard: Some(shard),
            ..config(&root().join("fixtures/models"), TargetSpec::Process.into())?
        })?;
        reports.push((PathBuf::from(format!("shard-{k}/report.json")), report));
    }
    let merged = preflight_harness::merge::merge(reports).map_err(Failed::from)?;
    let timed = |suite: &str, check: &str| {
        suite == "latency" || (suite == "fallback" && check == "not slower than the model")
    };
    let outline = |r: &Report| -> Vec<String> {
        let mut lines = vec![format!("release {}", r.verdict.as_str())];
        for m in &r.models {
            lines.push(format!("{} {} {}", m.name, m.version, m.verdict.as_str()));
            for s in &m.suites {
                lines.push(format!("  {} {}", s.suite, s.verdict.as_str()));
                for c in &s.checks {
                    let verdict = if timed(&s.suite, &c.name) {
                        "(timed)"
                    } else {
                        c.verdict.as_str()
                    };
                    lines.push(format!("    {} {verdict}", c.name));
                }
            }
        }
        lines
    };
    let (want, got) = (outline(whole), outline(&merged));
    if want == got {
        Ok(())
    } else {
        let differences: Vec<String> = want
            .iter()
            .zip(&got)
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("unsharded '{a}', merged '{b}'"))
            .take(5)
            .collect();
        Err(format!(
            "the merged shards differ from the unsharded run ({} against {} lines): {}",
            got.len(),
            want.len(),
            differences.join("; ")
        )
        .into())
    }
}

fn main() {
    let mut args = Arguments::from_args();
    // The latency suites measure the machine: one trial at a time.
    args.test_threads = Some(1);
    let mut trials = Vec::new();
    let repo = Repository::scan(&root().join("fixtures/models")).expect("fixtures/models");
    for model in repo.models() {
        for &suite in Suite::all() {
            let name = model.name.clone();
            trials.push(Trial::test(
                format!("{}::{}", suite.name(), model.name),
                move || clean(suite, &name),
            ));
        }
    }
    let text =
        std::fs::read_to_string(root().join("fixtures/defects/catalogue.toml")).expect("catalogue");
    let catalogue: Catalogue = toml::from_str(&text).expect("catalogue parses");
    for d in catalogue.defect {
        // A serving-side defect, over the protocol's gRPC half too.
        if matches!(d.lives_in, LivesIn::Endpoint) {
            let d = d.clone();
            trials.push(Trial::test(
                format!("grpc::defect::{}", d.name),
                move || defect(&d, Protocol::Grpc),
            ));
        }
        trials.push(Trial::test(format!("defect::{}", d.name), move || {
            defect(&d, Protocol::Rest)
        }));
    }
    trials.push(Trial::test("merge::four-shards", merged_shards));
    libtest_mimic::run(&args, trials).exit();
}
