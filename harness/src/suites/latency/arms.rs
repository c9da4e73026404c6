//! The arms of a model in the fleet run: its samples' bodies, and where its
//! last release is timed beside it.

use std::sync::Arc;

use preflight_bundle::{Manifest, Record};
use serde_json::Value;

use super::Baseline;
use super::load::Arm;
use crate::client::{Client, Unreachable};
use crate::suites::ModelUnderTest;

/// Single-row bodies of every sample, made once.
pub(super) fn bodies(manifest: &Manifest, samples: &[Record]) -> Arc<[Value]> {
    samples
        .iter()
        .map(|s| manifest.infer_request(&[s.inputs.as_slice()]))
        .collect()
}

/// The arm of the model's last release, or why there is none: the version
/// below in the repository, on the same endpoint, where it is served; else
/// the last release's endpoint's default version of the model.
pub(super) async fn baseline_arm(
    model: &ModelUnderTest,
    client: &Client,
    baseline_target: Option<Client>,
    manifest: &Arc<Manifest>,
    bodies: &Arc<[Value]>,
) -> Result<Result<(Arm, Baseline), String>, Unreachable> {
    let name = &manifest.model.name;
    let below = match &model.previous {
        Some(previous) => version_below(previous, client, manifest, bodies).await?,
        None => Err(format!(
            "version {} is the only version of '{name}' in the repository",
            manifest.model.version
        )),
    };
    let Err(why) = below else {
        return Ok(below);
    };
    let Some(target) = baseline_target else {
        return Ok(Err(why));
    };
    if target.status(&format!("/v2/models/{name}/ready")).await? != 200 {
        return Ok(Err(format!(
            "{why}, and the last release's endpoint does not serve it"
        )));
    }
    let arm = Arm::new(&target, None, Arc::clone(manifest), bodies)?;
    Ok(Ok((arm, Baseline::Target(target.base))))
}

/// The arm of the version below the candidate in the repository, on the
/// candidate's endpoint, or why it cannot be timed.
async fn version_below(
    previous: &preflight_bundle::Bundle,
    client: &Client,
    manifest: &Arc<Manifest>,
    bodies: &Arc<[Value]>,
) -> Result<Result<(Arm, Baseline), String>, Unreachable> {
    let name = &manifest.model.name;
    let version = previous.version();
    let ready = format!("/v2/models/{name}/versions/{version}/ready");
    if client.status(&ready).await? != 200 {
        return Ok(Err(format!(
            "version {version} is in the repository but the endpoint does not serve it"
        )));
    }
    let theirs = previous.manifest();
    // The same rows to both versions where they take the same inputs, so that
    // a pair differs only by the version; otherwise each its own samples.
    let bodies = if theirs.inputs == manifest.inputs {
        Arc::clone(bodies)
    } else {
        match previous.samples() {
            Ok(Some(samples)) => self::bodies(theirs, &samples),
            _ => {
                return Ok(Err(format!(
                    "version {version} takes other inputs and has no readable samples.jsonl"
                )));
            }
        }
    };
    let arm = Arm::new(client, Some(version), Arc::new(theirs.clone()), &bodies)?;
    Ok(Ok((arm, Baseline::Version(version))))
}
