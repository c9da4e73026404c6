//! What a failure points at: the input values the failing rows share, and
//! the inputs whose value, changed alone, brings a divergent row back.

use preflight_bundle::{Manifest, Record, Tolerance, Value};

use super::{ModelUnderTest, rows};
use crate::client::Unreachable;

/// Failing rows needed before what they share means anything: one row
/// shares every value with itself.
const FEW: usize = 3;
/// The distinct values of an input that a shared trait may name.
const MOST_VALUES: usize = 2;
/// A trait held by more than this share of all rows explains nothing.
const COMMON: f64 = 0.6;

/// A value as a reader writes it: `walk`, `12`, `null`.
pub(crate) fn show(value: &Value) -> String {
    match value {
        Value::Text(s) => s.clone(),
        Value::Null => "null".to_owned(),
        other => other.to_json().to_string(),
    }
}

/// What every failing row has and most rows do not, one phrase per input:
/// `all 37 failing rows have vehicle = bicycle (12% of rows do)`. Only
/// inputs whose failing rows take one or two values are named, so a
/// numeric input that varies says nothing.
pub(super) fn shared(manifest: &Manifest, failing: &[&[Value]], all: &[&[Value]]) -> Vec<String> {
    if failing.len() < FEW || all.is_empty() {
        return Vec::new();
    }
    let mut phrases = Vec::new();
    for (i, input) in manifest.inputs.iter().enumerate() {
        let mut values: Vec<&Value> = Vec::new();
        for row in failing {
            if !values.contains(&&row[i]) {
                values.push(&row[i]);
            }
            if values.len() > MOST_VALUES {
                break;
            }
        }
        if values.len() > MOST_VALUES {
            continue;
        }
        let holding = all.iter().filter(|row| values.contains(&&row[i])).count();
        let share = holding as f64 / all.len() as f64;
        if share > COMMON {
            continue;
        }
        let named = match values.as_slice() {
            [one] => format!("{} = {}", input.name, show(one)),
            _ => {
                let shown: Vec<String> = values.iter().map(|v| show(v)).collect();
                format!("{} in {{{}}}", input.name, shown.join(", "))
            }
        };
        phrases.push(format!(
            "all {} failing rows have {named} ({:.0}% of rows do)",
            failing.len(),
            share * 100.0
        ));
    }
    phrases
}

/// The inputs that explain why `row` diverges at artifact → endpoint: `row`
/// is sent again with one input at a time taken from `neighbour`, a row that
/// passes, and an input explains the divergence when that change alone
/// makes the endpoint agree with the artifact on the changed row. `None`
/// when the artifact cannot run the changed rows.
pub(super) async fn attribute(
    model: &ModelUnderTest,
    row: &Record,
    neighbour: &Record,
    tolerance: Tolerance,
) -> Result<Option<Vec<String>>, Unreachable> {
    let manifest = model.bundle.manifest();
    let (changed, variants): (Vec<usize>, Vec<Record>) = (0..manifest.inputs.len())
        .filter(|&i| row.inputs[i] != neighbour.inputs[i])
        .map(|i| {
            let mut variant = row.clone();
            variant.inputs[i] = neighbour.inputs[i].clone();
            (i, variant)
        })
        .unzip();
    if changed.is_empty() {
        return Ok(None);
    }
    let bundle = model.bundle.clone();
    let runs = variants.clone();
    let artifact = tokio::task::spawn_blocking(move || crate::artifact::predict(&bundle, &runs))
        .await
        .ok()
        .and_then(Result::ok);
    let Some(artifact) = artifact else {
        return Ok(None);
    };
    let records: Vec<&Record> = variants.iter().collect();
    let answer = model.client.infer(manifest, &rows(&records), None).await?;
    if !answer.ok() {
        return Ok(None);
    }
    let explaining = changed
        .iter()
        .enumerate()
        .filter(|&(v, _)| {
            artifact
                .iter()
                .zip(&answer.outputs)
                .all(|(want, got)| tolerance.accepts(got[v], want[v]))
        })
        .map(|(_, &i)| manifest.inputs[i].name.clone())
        .collect();
    Ok(Some(explaining))
}
