//! `cargo xtask bench fleet` and `cargo xtask bench verdicts`: the release
//! gate at fleet scale, timed, and how often its latency verdicts are right.
//! Prints the figures recorded in benches/README.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{build_release, image, ort};

/// Options of `bench fleet`.
pub(crate) struct FleetBench {
    pub(crate) models: usize,
    pub(crate) runs: usize,
    pub(crate) container: bool,
}

pub(crate) fn fleet(root: &Path, bench: &FleetBench) -> Result<()> {
    let preflight = Preflight::build(root)?;
    let target = if bench.container {
        format!("container={}", image::build(root)?)
    } else {
        "process".to_owned()
    };
    let repo = root.join(format!("target/bench-fleet-{}", bench.models));
    fleet_repository(&root.join("fixtures/models"), &repo, bench.models)?;
    let (mut rows, mut no_verdict) = (Vec::new(), Vec::new());
    for run in 1..=bench.runs {
        let out = repo.with_extension(format!("run-{run}"));
        let started = Instant::now();
        let mut command = preflight.verify(&target, &repo, &out);
        if bench.container {
            // Two versions of every model stay loaded, about 4.4 MiB each, and a version's
            // second session takes more (benches/README.md); the default 512 MiB is for a
            // release of a few.
            command.args([
                "--cpus",
                "2",
                "--memory-mib",
                &(128 + 16 * bench.models).to_string(),
            ]);
        }
        if out.exists() {
            std::fs::remove_dir_all(&out)?;
        }
        let output = command.output().context("running preflight verify")?;
        let status = output.status;
        let seconds = started.elapsed().as_secs_f64();
        if !matches!(status.code(), Some(0 | 1)) {
            // The next runs still run: how often a run ends without a
            // verdict is one of the figures.
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            eprintln!(
                "run {run}: {seconds:.1} s, exited with {status}, without a verdict: {}",
                last.unwrap_or_default()
            );
            no_verdict.push(run);
            continue;
        }
        let report = read_report(&out.join("report.json"))?;
        let tally = Tally::of(&report);
        eprintln!(
            "run {run}: {seconds:.1} s, exit {:?}, {} false alarms ({}), {} inconclusive \
                comparisons, latency run {}",
            status.code(),
            tally.failed.len(),
            tally.failed.join(", "),
            tally.inconclusive,
            latency_run(&report)
        );
        rows.push((seconds, tally));
    }
    #[allow(clippy::print_stdout)]
    {
        let alarms: usize = rows.iter().map(|(_, t)| t.failed.len()).sum();
        let times: Vec<String> = rows.iter().map(|(s, _)| format!("{s:.0} s")).collect();
        println!(
            "{} models ({target}): {} runs, {} without a verdict, wall {}, false alarms \
                {alarms} in total",
            bench.models,
            bench.runs,
            no_verdict.len(),
            times.join(" / ")
        );
    }
    if !no_verdict.is_empty() {
        bail!("runs without a verdict: {no_verdict:?}");
    }
    Ok(())
}

/// What one run of a clean fleet got wrong.
struct Tally {
    /// `model suite` for every failed suite: on a clean fleet, each is a false alarm.
    failed: Vec<String>,
    /// Latency comparisons left inconclusive (reported, never passed).
    inconclusive: usize,
}

impl Tally {
    fn of(report: &Value) -> Self {
        let mut failed = Vec::new();
        let mut inconclusive = 0;
        for model in report["models"].as_array().into_iter().flatten() {
            for suite in model["suites"].as_array().into_iter().flatten() {
                if suite["verdict"] == "failed" {
                    failed.push(format!(
                        "{} {}",
                        model["name"].as_str().unwrap_or("?"),
                        suite["suite"].as_str().unwrap_or("?")
                    ));
                }
                inconclusive += suite["checks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| {
                        c["message"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("inconclusive"))
                    })
                    .count();
            }
        }
        Self {
            failed,
            inconclusive,
        }
    }
}

fn latency_run(report: &Value) -> String {
    match report["latency_runs"].get(0) {
        Some(run) => format!(
            "{:.0} s, {} requests in {} rounds, offered {:.0}/s of {:.0}/s asked \
            (capacity {:.0}/s)",
            run["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            run["requests"],
            run["rounds"],
            run["offered_per_s"].as_f64().unwrap_or(0.0),
            run["asked_per_s"].as_f64().unwrap_or(0.0),
            run["capacity_per_s"].as_f64().unwrap_or(0.0)
        ),
        None => "none".to_owned(),
    }
}

fn read_report(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{}: no report", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
}

/// A repository of `n` models made from copies of every fixture model in
/// turn, each with a version 1 and a version 2: the fixture's own two
/// versions where it has them, else its one version served as both. Files
/// are hard-linked; manifests are rewritten with the copy's name and version.
fn fleet_repository(fixtures: &Path, repo: &Path, n: usize) -> Result<()> {
    if repo.exists() {
        std::fs::remove_dir_all(repo)?;
    }
    let mut sources: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for entry in sorted_dirs(fixtures)? {
        let name = entry
            .file_name()
            .context("model folder")?
            .to_string_lossy()
            .into_owned();
        sources.push((name, sorted_dirs(&entry)?));
    }
    if sources.is_empty() {
        bail!("{}: no models", fixtures.display());
    }
    for i in 0..n {
        let (model, versions) = &sources[i % sources.len()];
        let name = format!("{model}-{i:04}");
        let v1 = &versions[0];
        let v2 = versions.get(1).unwrap_or(v1);
        for (version, source) in [(1, v1), (2, v2)] {
            copy_bundle(
                source,
                &repo.join(&name).join(version.to_string()),
                model,
                &name,
                version,
            )?;
        }
    }
    Ok(())
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// A copy of the bundle `source` of `model` at `dir`, as model `name`,
/// version `version`: the manifest rewritten, every other file hard-linked.
pub(crate) fn copy_bundle(
    source: &Path,
    dir: &Path,
    model: &str,
    name: &str,
    version: u32,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        let target = dir.join(entry.file_name());
        if entry.file_name() == "manifest.toml" {
            let manifest = std::fs::read_to_string(entry.path())?;
            let renamed = manifest.replacen(
                &format!("name = \"{model}\""),
                &format!("name = \"{name}\""),
                1,
            );
            let versioned = match renamed.lines().find(|l| l.starts_with("version = ")) {
                Some(line) => renamed.replacen(line, &format!("version = {version}"), 1),
                None => bail!("{}: no version line", entry.path().display()),
            };
            std::fs::write(&target, versioned)?;
        } else if std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// `bench verdicts`: each latency defect of the catalogue verified `runs`
/// times, and the clean fixtures as many, counting how often latency failed.
/// The clean fixtures are verified against the committed baseline report,
/// so that every model's last release is brought in from its commit; the
/// defects marked "alone" ship only their candidate, with the last release
/// brought in by `--baseline-models`.
pub(crate) fn verdicts(root: &Path, runs: usize) -> Result<()> {
    let preflight = Preflight::build(root)?;
    let defects = root.join("fixtures/defects/bundles");
    let scratch = root.join("target/bench-verdicts");
    let apart = |name: &str| -> Result<(PathBuf, Option<PathBuf>)> {
        let (candidate, last) = split_last_release(&defects.join(name), &scratch.join(name))?;
        Ok((candidate, Some(last)))
    };
    let cases = [
        (
            "clean fixtures, last release from the baseline's commit (false alarms)",
            (root.join("fixtures/models"), None),
        ),
        (
            "slower-release (1.5× per row)",
            (defects.join("slower-release"), None),
        ),
        (
            "much-slower-release (3× per row)",
            (defects.join("much-slower-release"), None),
        ),
        (
            "much-slower-release, alone (3× per row)",
            apart("much-slower-release")?,
        ),
        (
            "long-trips-slower, alone (+10 ms over 7 km)",
            apart("long-trips-slower")?,
        ),
    ];
    let baseline = root.join("fixtures/baseline/report.json");
    for (label, (models, last)) in cases {
        let mut flagged = 0;
        for run in 1..=runs {
            let out = scratch.join(format!("run-{run}"));
            let mut verify = preflight.verify("process", &models, &out);
            verify.args(["--suites", "latency"]);
            match &last {
                Some(last) => verify.arg("--baseline-models").arg(last),
                None => verify.arg("--baseline").arg(&baseline),
            };
            verify.output().context("running preflight verify")?;
            let tally = Tally::of(&read_report(&out.join("report.json"))?);
            eprintln!("{label} run {run}: latency failed on {:?}", tally.failed);
            flagged += usize::from(!tally.failed.is_empty());
        }
        #[allow(clippy::print_stdout)]
        {
            println!("{label}: latency failed in {flagged} of {runs} runs");
        }
    }
    Ok(())
}

/// The repository `models` split under `into`: `candidate/`, each model's
/// highest version, and `last-release/`, the versions below, each a symlink.
fn split_last_release(models: &Path, into: &Path) -> Result<(PathBuf, PathBuf)> {
    let (candidate, last) = (into.join("candidate"), into.join("last-release"));
    if into.exists() {
        std::fs::remove_dir_all(into)?;
    }
    for model in sorted_dirs(models)? {
        let name = model.file_name().context("a model folder's name")?;
        let versions = sorted_dirs(&model)?;
        let Some((highest, below)) = versions.split_last() else {
            continue;
        };
        for (repo, version) in below
            .iter()
            .map(|v| (&last, v))
            .chain([(&candidate, highest)])
        {
            let folder = repo.join(name);
            std::fs::create_dir_all(&folder)?;
            let link = folder.join(version.file_name().context("a version folder's name")?);
            std::os::unix::fs::symlink(version, link)?;
        }
    }
    Ok((candidate, last))
}

/// The release `preflight` and `preflight-serve`, built once, and the ONNX
/// Runtime library they load.
struct Preflight {
    release: PathBuf,
    lib: PathBuf,
}

impl Preflight {
    fn build(root: &Path) -> Result<Self> {
        let lib = ort::ensure(root)?;
        let release = build_release(
            root,
            &[
                ("preflight-harness", "preflight"),
                ("preflight-serving", "preflight-serve"),
            ],
        )?;
        Ok(Self { release, lib })
    }

    /// `preflight verify --target TARGET --models MODELS --out OUT`.
    fn verify(&self, target: &str, models: &Path, out: &Path) -> Command {
        let mut command = Command::new(self.release.join("preflight"));
        command
            .args(["verify", "--target", target, "--models"])
            .arg(models)
            .arg("--out")
            .arg(out)
            .env("ORT_DYLIB_PATH", &self.lib)
            .env("PREFLIGHT_SERVE", self.release.join("preflight-serve"));
        command
    }
}
