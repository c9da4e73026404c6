//! `preflight report merge`: the shards of one release, verified on several
//! runners, become the report of the whole release.

use std::path::PathBuf;

use crate::report::{Aborted, ModelReport, REPORT_FORMAT, Report, Verdict};
use crate::shard::Shard;

/// Merges shard reports into one. Every shard `1..=N` of one split must be
/// there exactly once, over the same repository and target and under the
/// same policy, and no model may appear twice: a missing shard would
/// otherwise pass a release unverified.
pub fn merge(shards: Vec<(PathBuf, Report)>) -> Result<Report, String> {
    let Some((_, first)) = shards.first().cloned() else {
        return Err("report merge needs at least one shard report".to_owned());
    };
    check_split(&shards)?;
    let mut shards = shards;
    shards.sort_by_key(|(_, r)| {
        r.shard
            .as_deref()
            .and_then(|s| Shard::parse(s).ok())
            .map(Shard::index)
    });
    let mut models: Vec<ModelReport> = Vec::new();
    let mut latency_runs = Vec::new();
    for (path, report) in &shards {
        for model in &report.models {
            if models.iter().any(|m| m.name == model.name) {
                return Err(format!(
                    "{}: model '{}' is in two shards",
                    path.display(),
                    model.name
                ));
            }
            models.push(model.clone());
        }
        latency_runs.extend(report.latency_runs.iter().cloned());
    }
    // The order an unsharded run gives: the repository's, by name.
    models.sort_by(|a, b| a.name.cmp(&b.name));
    // A shard that aborted left its models unverified: so is the release.
    let aborted = shards.iter().find_map(|(path, r)| {
        r.aborted.as_ref().map(|a| Aborted {
            exit_code: a.exit_code,
            error: format!("{}: {}", path.display(), a.error),
        })
    });
    let verdict = match aborted {
        Some(_) => Verdict::Failed,
        None => Verdict::of(models.iter().map(|m| m.verdict)),
    };
    Ok(Report {
        format: REPORT_FORMAT,
        preflight_version: first.preflight_version.clone(),
        verdict,
        repository: first.repository.clone(),
        target: first.target.clone(),
        protocol: first.protocol.clone(),
        required: first.required.clone(),
        started_at: shards
            .iter()
            .map(|(_, r)| r.started_at.clone())
            .min()
            .unwrap_or_default(),
        // Shards run side by side: the release took as long as the slowest.
        duration_ms: shards
            .iter()
            .map(|(_, r)| r.duration_ms)
            .fold(0.0, f64::max),
        shard: None,
        commit: first.commit.clone(),
        baseline: first.baseline.clone(),
        aborted,
        latency_runs,
        models,
    })
}

/// Every shard of one split exactly once, alike in what they verified.
fn check_split(shards: &[(PathBuf, Report)]) -> Result<(), String> {
    let Some((first_path, first)) = shards.first() else {
        return Ok(());
    };
    let mut seen: Vec<Option<&PathBuf>> = Vec::new();
    for (path, report) in shards {
        let Some(text) = &report.shard else {
            return Err(format!(
                "{}: not a shard report (it was not made with --shard)",
                path.display()
            ));
        };
        let shard = Shard::parse(text).map_err(|e| format!("{}: {e}", path.display()))?;
        if seen.is_empty() {
            seen = vec![None; shard.count() as usize];
        }
        if shard.count() as usize != seen.len() {
            return Err(format!(
                "{}: shard {shard} is not of the same split as {} ({} shards)",
                path.display(),
                first_path.display(),
                seen.len()
            ));
        }
        for (what, mine, theirs) in [
            (
                "repository",
                report.repository.clone(),
                first.repository.clone(),
            ),
            ("target", report.target.clone(), first.target.clone()),
            ("protocol", report.protocol.clone(), first.protocol.clone()),
            (
                "--require",
                report.required.join(","),
                first.required.join(","),
            ),
        ] {
            if mine != theirs {
                return Err(format!(
                    "{}: {what} '{mine}' differs from {}'s '{theirs}'",
                    path.display(),
                    first_path.display()
                ));
            }
        }
        let slot = &mut seen[shard.index() as usize - 1];
        if let Some(other) = slot {
            return Err(format!(
                "{}: shard {shard} is also {}",
                path.display(),
                other.display()
            ));
        }
        *slot = Some(path);
    }
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, p)| p.is_none())
        .map(|(k, _)| format!("{}/{}", k + 1, seen.len()))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "shard {} is missing: its models would go unverified",
            missing.join(", ")
        ))
    }
}
