//! `cargo xtask verify`: the release gate. Builds the serving image, runs
//! `preflight verify` against the real container on `fixtures/models`
//! (against the committed baseline report when there is one) with the strict
//! policy (`--require strict`), writes the reports to `target/preflight/`,
//! and exits with the harness's exit code.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::{build_release, image};

/// The last release's report that every run is compared with.
const BASELINE: &str = "fixtures/baseline/report.json";
const OUT: &str = "target/preflight";

/// Runs the gate on `models` (a repository path relative to the root);
/// `refresh` also stores a passing run's report as the new baseline.
/// `shard` (`K/N`) verifies one shard of the models, as CI's matrix does.
/// `passed` goes to `preflight verify` last, so that it can narrow the run
/// (`--only`, `--suites`) or name another `--baseline`.
pub(crate) fn run(
    root: &Path,
    models: &str,
    refresh: bool,
    shard: Option<&str>,
    passed: &[String],
) -> Result<u8> {
    let tag = image::build(root)?;
    let release = build_release(root, &[("preflight-harness", "preflight")])?;
    let mut verify = Command::new(release.join("preflight"));
    verify.current_dir(root).args([
        "verify",
        "--models",
        models,
        "--target",
        &format!("container={tag}"),
        "--out",
        OUT,
    ]);
    if let Some(shard) = shard {
        verify.args(["--shard", shard]);
    }
    // The strict policy: no suite may skip a model, no manifest may carry a
    // key the format does not know, and every comparison with the last
    // release is made, except when there is no last release to compare with.
    let baseline = root.join(BASELINE);
    let own_baseline = passed.iter().any(|a| a == "--baseline");
    if own_baseline {
        verify.args(["--require", "strict"]);
    } else if baseline.is_file() && !refresh {
        verify.arg("--baseline").arg(&baseline);
        verify.args(["--require", "strict"]);
    } else {
        verify.args(["--require", "suites,manifest"]);
    }
    verify.args(passed);
    eprintln!("$ {verify:?}");
    let status = verify.status().context("running preflight")?;
    let code = status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(1);
    eprintln!(
        "reports: {}/{{report.html,summary.md,junit.xml,report.json}}",
        root.join(OUT).display()
    );
    if refresh && code == 0 {
        std::fs::create_dir_all(baseline.parent().context("baseline folder")?)?;
        std::fs::copy(root.join(OUT).join("report.json"), &baseline)?;
        eprintln!("baseline refreshed: {BASELINE}; review and commit it");
    }
    Ok(code)
}
