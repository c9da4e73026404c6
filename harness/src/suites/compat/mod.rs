//! `compat`: what the last release's clients will see of the candidate.
//! The two manifests are compared change by change (`changes`), and the
//! last release's samples are sent to the candidate as its clients send
//! them. A breaking change fails the release unless `[contract] breaking`
//! names it (`docs/harness.md`, "compat").

mod changes;

use preflight_bundle::{Bundle, Manifest, Record};

use super::{CHUNK, ModelUnderTest, Suite, rows, skipped};
use crate::client::{Client, Unreachable};
use crate::report::{Check, Skip, SuiteReport};

use super::descriptor::{Descriptor, Need};
use changes::{Change, between};

/// What the rest of the harness knows of the suite (`Suite::descriptor`).
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    needs: &[Need::LastRelease],
    ..Descriptor::FUNCTIONAL
};

/// Failed requests the replay check names, at most.
const NAMED: usize = 3;

pub(super) async fn run(model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    let last = match &model.last_release {
        Ok(last) => last,
        Err(why) => return Ok(absent(model, why)),
    };
    let manifest = model.bundle.manifest();
    let changes = between(last.manifest(), manifest);
    let acknowledged = &manifest.contract.breaking;
    let mut checks = vec![changes_check(last, &changes, acknowledged)];
    let excused = changes
        .iter()
        .any(|c| c.breaking && acknowledged.contains(&c.text));
    checks.push(replay(model, last, excused).await?);
    Ok(SuiteReport::new(Suite::Compat.name(), checks))
}

/// Why there is nothing to compare with: as far as the run knows, a first
/// release when no baseline report was given (as rollout, nothing to
/// judge), a new model when the baseline report does not have it, and else
/// a last release that could not be brought in: a gap in the run, which
/// `--require baseline` fails.
fn absent(model: &ModelUnderTest, why: &str) -> SuiteReport {
    let skip = match model.baseline {
        super::BaselineReport::NotGiven => Skip::NotApplicable,
        super::BaselineReport::NewModel => Skip::NewModel,
        super::BaselineReport::Found { .. } => Skip::NotCompared,
    };
    skipped(
        Suite::Compat,
        skip,
        format!("the last release's bundle is not at hand: {why}"),
    )
}

/// The breaking changes the contract does not acknowledge fail; the others
/// are listed.
fn changes_check(last: &Bundle, changes: &[Change], acknowledged: &[String]) -> Check {
    let against = format!("against version {}", last.version());
    let listed = |breaking: bool, known: bool| -> Vec<String> {
        changes
            .iter()
            .filter(|c| c.breaking == breaking && acknowledged.contains(&c.text) == known)
            .map(|c| format!("'{}'", c.text))
            .collect()
    };
    let mut parts = Vec::new();
    for (label, list) in [
        ("breaking, acknowledged by the contract", listed(true, true)),
        ("compatible", listed(false, false)),
    ] {
        if !list.is_empty() {
            parts.push(format!("{label}: {}", list.join(", ")));
        }
    }
    let stale: Vec<String> = acknowledged
        .iter()
        .filter(|a| !changes.iter().any(|c| c.breaking && &c.text == *a))
        .map(|a| format!("'{a}'"))
        .collect();
    if !stale.is_empty() {
        parts.push(format!(
            "contract.breaking names what did not change: {}",
            stale.join(", ")
        ));
    }
    let unacknowledged = listed(true, false);
    let rest = if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join("; "))
    };
    if unacknowledged.is_empty() {
        let none = if changes.is_empty() {
            "no change a client can see"
        } else {
            "no unacknowledged breaking change"
        };
        Check::new("changes", true, format!("{none} {against}{rest}"))
    } else {
        Check::new(
            "changes",
            false,
            format!(
                "breaking for the last release's clients {against}: {}; a release that means \
                 it names each in [contract] breaking{rest}",
                unacknowledged.join(", ")
            ),
        )
    }
}

/// The last release's samples, sent to the candidate as the last release's
/// clients send them and read as they read the answer: every one must
/// still be answered. `excused`: the contract acknowledges a breaking
/// change, so failures are expected and listed, not failed.
async fn replay(
    model: &ModelUnderTest,
    last: &Bundle,
    excused: bool,
) -> Result<Check, Unreachable> {
    const NAME: &str = "replay";
    let samples = match last.samples() {
        Ok(Some(samples)) if !samples.is_empty() => samples,
        Ok(_) => {
            return Ok(Check::skipped(
                NAME,
                Skip::Missing,
                format!("version {} has no samples.jsonl", last.version()),
            ));
        }
        Err(e) => return Ok(Check::skipped(NAME, Skip::Missing, e.to_string())),
    };
    // What the last release's clients send, to the candidate's version.
    let mut theirs: Manifest = last.manifest().clone();
    theirs.model.version = model.bundle.version();
    let failed = failures(&model.client, &theirs, &samples).await?;
    let n = samples.len();
    let sent = format!(
        "{n} samples of version {} sent to version {} as its clients send them",
        last.version(),
        model.bundle.version()
    );
    let Some((first, _)) = failed.first() else {
        return Ok(Check::new(
            NAME,
            true,
            format!("{sent}: every one answered"),
        ));
    };
    let named: Vec<String> = failed
        .iter()
        .take(NAMED)
        .map(|(i, why)| format!("sample {} ({why})", i + 1))
        .collect();
    let curl = model.client.curl(&theirs, &samples[*first].inputs);
    let text = format!(
        "{sent}: {} of {n} not answered: {}; to send the first again: {curl}",
        failed.len(),
        named.join("; ")
    );
    Ok(if excused {
        Check::new(
            NAME,
            true,
            format!("{text}; expected from the breaking changes the contract acknowledges"),
        )
    } else {
        Check::new(NAME, false, text)
    })
}

/// The samples not answered, by index, with why: in chunks, and a chunk
/// that fails row by row, so that each failure is named.
async fn failures(
    client: &Client,
    manifest: &Manifest,
    samples: &[Record],
) -> Result<Vec<(usize, String)>, Unreachable> {
    let mut failed = Vec::new();
    for (c, chunk) in samples.chunks(CHUNK).enumerate() {
        let all: Vec<&Record> = chunk.iter().collect();
        if answered(client, manifest, &all).await?.is_none() {
            continue;
        }
        for (i, record) in chunk.iter().enumerate() {
            if let Some(why) = answered(client, manifest, &[record]).await? {
                failed.push((c * CHUNK + i, why));
            }
        }
    }
    Ok(failed)
}

/// Nothing when the rows were answered as the manifest's clients read an
/// answer: a 200 with each of its outputs, by name, of its datatype, and a
/// value for every row; else why not.
async fn answered(
    client: &Client,
    manifest: &Manifest,
    records: &[&Record],
) -> Result<Option<String>, Unreachable> {
    let model = &manifest.model;
    let body = manifest.infer_request(&rows(records));
    let request = client.prepare(&model.name, Some(model.version), &body)?;
    let (status, text) = client.send_text(&request).await?;
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if status != 200 {
        let error = answer["error"].as_str().unwrap_or(text.as_str());
        return Ok(Some(format!("{status} {error}")));
    }
    let outputs = answer["outputs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for feature in &manifest.outputs {
        let Some(output) = outputs.iter().find(|o| o["name"] == feature.name.as_str()) else {
            let names: Vec<&str> = outputs.iter().filter_map(|o| o["name"].as_str()).collect();
            return Ok(Some(format!(
                "the answer has no output '{}', only {}",
                feature.name,
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    format!("'{}'", names.join("', '"))
                }
            )));
        };
        if output["datatype"] != feature.datatype.as_str() {
            return Ok(Some(format!(
                "output '{}' is {}, where its clients read {}",
                feature.name, output["datatype"], feature.datatype
            )));
        }
        let values = leaves(&output["data"]);
        let expected = records.len() * feature.width();
        if values != expected {
            return Ok(Some(format!(
                "output '{}' has {values} values for {} rows, where its clients read {expected}",
                feature.name,
                records.len()
            )));
        }
    }
    Ok(None)
}

/// The values of a tensor's `data`, flat or nested.
fn leaves(data: &serde_json::Value) -> usize {
    match data {
        serde_json::Value::Array(items) => items.iter().map(leaves).sum(),
        _ => 1,
    }
}
