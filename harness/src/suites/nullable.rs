//! `nullable`: for each nullable input, samples with it set to null are
//! answered, with outputs in the declared range.

use preflight_bundle::{Record, Value};

use super::descriptor::Descriptor;
use super::{CHUNK, ModelUnderTest, Suite, out_of_range, skipped};
use crate::client::Unreachable;
use crate::report::{Check, Skip, SuiteReport};

/// What the rest of the harness knows of the suite (`Suite::descriptor`).
pub(super) const DESCRIPTOR: Descriptor = Descriptor::FUNCTIONAL;

pub(super) async fn run(model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    let manifest = model.bundle.manifest();
    let Some(samples) = &model.samples else {
        return Ok(skipped(
            Suite::Nullable,
            Skip::Missing,
            "needs samples.jsonl",
        ));
    };
    let nullable: Vec<usize> = (0..manifest.inputs.len())
        .filter(|&i| manifest.inputs[i].nullable)
        .collect();
    if nullable.is_empty() {
        return Ok(skipped(
            Suite::Nullable,
            Skip::NotApplicable,
            "the model has no nullable input",
        ));
    }
    let mut checks = Vec::new();
    for index in nullable {
        let name = format!("'{}' = null", manifest.inputs[index].name);
        let rows: Vec<Vec<Value>> = samples
            .iter()
            .take(CHUNK)
            .map(|s: &Record| {
                let mut row = s.inputs.clone();
                row[index] = Value::Null;
                row
            })
            .collect();
        let borrowed: Vec<&[Value]> = rows.iter().map(Vec::as_slice).collect();
        let answer = model.client.infer(manifest, &borrowed, None).await?;
        if !answer.ok() {
            checks.push(Check::new(
                &name,
                false,
                format!(
                    "{} rows with a null: answered {}",
                    rows.len(),
                    answer.describe()
                ),
            ));
            continue;
        }
        checks.push(match out_of_range(manifest, &answer.outputs) {
            None => Check::new(
                &name,
                true,
                format!("{} rows answered in range", rows.len()),
            ),
            Some(why) => Check::new(&name, false, why),
        });
    }
    Ok(SuiteReport::new(Suite::Nullable.name(), checks))
}
