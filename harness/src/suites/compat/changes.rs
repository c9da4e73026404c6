//! What changes for a client of the last release, read from the two
//! manifests: each change named the way `[contract] breaking` acknowledges
//! it, and classified as compatible or breaking (`docs/harness.md`, "compat").

use preflight_bundle::{Feature, Manifest};

/// One difference between the last release's manifest and the candidate's.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Change {
    /// The change as `[contract] breaking` names it: `vehicle: category 'moto' removed`.
    pub(super) text: String,
    /// Whether a request or an answer that worked for the last release's
    /// clients may no longer work.
    pub(super) breaking: bool,
}

impl Change {
    fn breaking(text: String) -> Self {
        Self {
            text,
            breaking: true,
        }
    }

    fn compatible(text: String) -> Self {
        Self {
            text,
            breaking: false,
        }
    }
}

/// Every change from `last` to `candidate`, inputs first, then outputs and
/// the model's task and classes, each in the manifests' order.
pub(super) fn between(last: &Manifest, candidate: &Manifest) -> Vec<Change> {
    let mut changes = Vec::new();
    for was in &last.inputs {
        match find(&candidate.inputs, &was.name) {
            None => changes.push(Change::breaking(format!("{}: input removed", was.name))),
            Some(is) => input(was, is, &mut changes),
        }
    }
    for is in &candidate.inputs {
        if find(&last.inputs, &is.name).is_none() {
            changes.push(if is.nullable {
                Change::compatible(format!("{}: nullable input added", is.name))
            } else {
                Change::breaking(format!("{}: required input added", is.name))
            });
        }
    }
    for was in &last.outputs {
        match find(&candidate.outputs, &was.name) {
            None => changes.push(Change::breaking(format!("{}: output removed", was.name))),
            Some(is) => typed(was, is, "output", &mut changes),
        }
    }
    for is in &candidate.outputs {
        if find(&last.outputs, &is.name).is_none() {
            changes.push(Change::compatible(format!("{}: output added", is.name)));
        }
    }
    let (was, is) = (&last.model, &candidate.model);
    if was.task != is.task {
        changes.push(Change::breaking(format!(
            "model: task {} → {}",
            task(was.task),
            task(is.task)
        )));
    }
    if was.classes != is.classes {
        let list = |c: &Option<Vec<preflight_bundle::Class>>| match c {
            None => "none".to_owned(),
            Some(c) => {
                let names: Vec<String> = c.iter().map(|c| format!("'{c}'")).collect();
                format!("[{}]", names.join(", "))
            }
        };
        // A label its clients have never seen, or one they wait for in vain,
        // and the probability columns move.
        changes.push(Change::breaking(format!(
            "model: classes {} → {}",
            list(&was.classes),
            list(&is.classes)
        )));
    }
    changes
}

fn find<'a>(features: &'a [Feature], name: &str) -> Option<&'a Feature> {
    features.iter().find(|f| f.name == name)
}

fn task(task: preflight_bundle::Task) -> &'static str {
    match task {
        preflight_bundle::Task::Regression => "regression",
        preflight_bundle::Task::Classification => "classification",
    }
}

/// A datatype or shape changed: every client reads or writes the tensor anew.
fn typed(was: &Feature, is: &Feature, kind: &str, changes: &mut Vec<Change>) {
    let name = &was.name;
    if was.datatype != is.datatype {
        changes.push(Change::breaking(format!(
            "{name}: {kind} datatype {} → {}",
            was.datatype, is.datatype
        )));
    }
    if was.shape != is.shape {
        let shape = |s: &Option<Vec<i64>>| match s {
            None => "[-1]".to_owned(),
            Some(s) => format!("{s:?}"),
        };
        changes.push(Change::breaking(format!(
            "{name}: {kind} shape {} → {}",
            shape(&was.shape),
            shape(&is.shape)
        )));
    }
}

/// What the candidate accepts of an input, against what the last release did.
fn input(was: &Feature, is: &Feature, changes: &mut Vec<Change>) {
    let name = &was.name;
    typed(was, is, "input", changes);
    match (was.nullable, is.nullable) {
        (true, false) => changes.push(Change::breaking(format!("{name}: nullable made required"))),
        (false, true) => changes.push(Change::compatible(format!("{name}: made nullable"))),
        _ => {}
    }
    match (&was.categories, &is.categories) {
        (Some(old), Some(new)) => {
            for c in old.iter().filter(|c| !new.contains(c)) {
                changes.push(Change::breaking(format!("{name}: category '{c}' removed")));
            }
            for c in new.iter().filter(|c| !old.contains(c)) {
                changes.push(Change::compatible(format!("{name}: category '{c}' added")));
            }
        }
        (None, Some(_)) => changes.push(Change::breaking(format!(
            "{name}: now limited to its declared categories"
        ))),
        (Some(_), None) => changes.push(Change::compatible(format!(
            "{name}: no longer limited to categories"
        ))),
        (None, None) => {}
    }
    bound(name, "min", was.min, is.min, |old, new| new > old, changes);
    bound(name, "max", was.max, is.max, |old, new| new < old, changes);
}

/// A bound of an input's range: narrowing it (`narrows`) turns away values
/// the last release took; widening it is compatible.
fn bound(
    name: &str,
    which: &str,
    was: Option<f64>,
    is: Option<f64>,
    narrows: impl Fn(f64, f64) -> bool,
    changes: &mut Vec<Change>,
) {
    let text = |b: Option<f64>| b.map_or("none".to_owned(), |b| b.to_string());
    let narrowed = match (was, is) {
        (Some(old), Some(new)) if old != new => narrows(old, new),
        (None, Some(_)) => true,
        (Some(_), None) => false,
        _ => return,
    };
    let what = format!("{name}: {which} {} → {}", text(was), text(is));
    changes.push(if narrowed {
        Change::breaking(format!("{what}, range narrowed"))
    } else {
        Change::compatible(format!("{what}, range widened"))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(inputs: &str, outputs: &str, model: &str) -> Manifest {
        let text = format!(
            r#"
[model]
name = "m"
version = 1
{model}

[runtime]
model = "model.onnx"

{inputs}
{outputs}
"#
        );
        Manifest::parse(&text, std::path::Path::new("manifest.toml")).expect("a valid manifest")
    }

    const LAST_INPUTS: &str = r#"
[[inputs]]
name = "distance_km"
datatype = "FP32"
nullable = true
min = 0.0
max = 100.0

[[inputs]]
name = "vehicle"
datatype = "BYTES"
categories = ["bike", "car", "moto"]
"#;
    const OUTPUTS: &str = r#"
[[outputs]]
name = "eta_minutes"
datatype = "FP32"
"#;

    fn texts(changes: &[Change], breaking: bool) -> Vec<&str> {
        changes
            .iter()
            .filter(|c| c.breaking == breaking)
            .map(|c| c.text.as_str())
            .collect()
    }

    #[test]
    fn the_same_manifest_changes_nothing() {
        let last = manifest(LAST_INPUTS, OUTPUTS, "task = \"regression\"");
        assert_eq!(between(&last, &last), []);
    }

    #[test]
    fn what_a_client_of_the_last_release_loses_is_breaking() {
        let last = manifest(LAST_INPUTS, OUTPUTS, "task = \"regression\"");
        let candidate = manifest(
            r#"
[[inputs]]
name = "distance_km"
datatype = "FP64"
min = 1.0
max = 100.0

[[inputs]]
name = "vehicle"
datatype = "BYTES"
categories = ["bike", "car"]

[[inputs]]
name = "hour"
datatype = "INT64"
"#,
            r#"
[[outputs]]
name = "eta"
datatype = "FP32"
"#,
            "task = \"regression\"",
        );
        let changes = between(&last, &candidate);
        assert_eq!(
            texts(&changes, true),
            [
                "distance_km: input datatype FP32 → FP64",
                "distance_km: nullable made required",
                "distance_km: min 0 → 1, range narrowed",
                "vehicle: category 'moto' removed",
                "hour: required input added",
                "eta_minutes: output removed",
            ]
        );
        assert_eq!(texts(&changes, false), ["eta: output added"]);
    }

    #[test]
    fn what_only_adds_is_compatible() {
        let last = manifest(LAST_INPUTS, OUTPUTS, "task = \"regression\"");
        let candidate = manifest(
            r#"
[[inputs]]
name = "distance_km"
datatype = "FP32"
nullable = true
min = 0.0

[[inputs]]
name = "vehicle"
datatype = "BYTES"
categories = ["bike", "car", "moto", "cargo_bike"]

[[inputs]]
name = "rain_mm"
datatype = "FP32"
nullable = true
"#,
            OUTPUTS,
            "task = \"regression\"",
        );
        let changes = between(&last, &candidate);
        assert_eq!(texts(&changes, true), Vec::<&str>::new());
        assert_eq!(
            texts(&changes, false),
            [
                "distance_km: max 100 → none, range widened",
                "vehicle: category 'cargo_bike' added",
                "rain_mm: nullable input added",
            ]
        );
    }
}
