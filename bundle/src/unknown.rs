//! Keys the format does not know, in the tables whose other keys are
//! optional: there a misspelt `[contracts]` would silently turn the suites it
//! configures into skips. The tables whose keys are all known and checked
//! (`[runtime]`, `[[inputs]]`, `[contract]` and its budgets) reject unknown
//! keys outright instead; top-level tables other tools may add, so an
//! unknown one is a warning, not an error.

use std::path::Path;

use crate::error::{Location, Warning};

/// The known keys of each table where an unknown key is only a warning.
const KNOWN: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "model", "producer", "runtime", "inputs", "outputs", "contract",
        ],
    ),
    (
        "model",
        &["name", "version", "task", "description", "classes"],
    ),
    ("producer", &["python", "packages"]),
];

/// A warning for every unknown key of `manifest` (the parsed `text`), with
/// its line and the known key it is closest to.
pub(crate) fn unknown_keys(text: &str, manifest: &toml::Table, path: &Path) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for &(table, known) in KNOWN {
        let keys = if table.is_empty() {
            Some(manifest)
        } else {
            manifest.get(table).and_then(toml::Value::as_table)
        };
        for key in keys.into_iter().flat_map(|t| t.keys()) {
            if known.contains(&key.as_str()) {
                continue;
            }
            let dotted = if table.is_empty() {
                key.clone()
            } else {
                format!("{table}.{key}")
            };
            let hint = closest(key, known)
                .map(|k| format!("; did you mean '{k}'?"))
                .unwrap_or_default();
            let what = if table.is_empty() {
                "top-level key"
            } else {
                "key in this table"
            };
            warnings.push(Warning {
                location: Location {
                    file: path.to_path_buf(),
                    line: line_of_key(text, table, key),
                    key: Some(dotted),
                },
                message: format!(
                    "unknown key: BUNDLE.md has no such {what}, so nothing reads it{hint}"
                ),
            });
        }
    }
    warnings
}

/// The known key within edit distance 2 of `key`, if one is.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), *k))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, k)| k)
}

/// The line (from 1) where `key` of `table` is written: a `[table.key]` or
/// `[[table.key]]` header, or `key = ` inside `[table]`.
fn line_of_key(text: &str, table: &str, key: &str) -> Option<usize> {
    let dotted = if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    };
    let mut current = String::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            let name = header.trim_start_matches('[');
            let name = name.split(']').next().unwrap_or("").trim();
            if name == dotted || name.starts_with(&format!("{dotted}.")) {
                return Some(number + 1);
            }
            current = name.to_owned();
        } else if current == table {
            let name = line.split('=').next().unwrap_or("").trim();
            if line.contains('=') && name.trim_matches('"') == key {
                return Some(number + 1);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(text: &str) -> Vec<String> {
        let table: toml::Table = text.parse().unwrap_or_default();
        unknown_keys(text, &table, Path::new("manifest.toml"))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_misspelt_table_is_named_with_its_line_and_the_key_it_is_close_to() {
        let text = "[model]\nname = \"m\"\n\n[contracts]\nparity = { abs = 1.0, rel = 0.0 }\n";
        assert_eq!(
            warnings(text),
            [
                "manifest.toml:4: contracts: unknown key: BUNDLE.md has no such top-level key, \
              so nothing reads it; did you mean 'contract'?"
            ]
        );
    }

    #[test]
    fn an_unknown_key_of_a_table_is_found_inline_or_as_a_header() {
        let text = "[model]\ndescripton = \"x\"\n\n[producer.pakages]\nonnx = \"1\"\n";
        let found = warnings(text);
        assert_eq!(found.len(), 2, "{found:?}");
        let (model, producer) = (&found[0], &found[1]);
        assert!(
            model.starts_with("manifest.toml:2: model.descripton:"),
            "{found:?}"
        );
        assert!(model.ends_with("did you mean 'description'?"), "{found:?}");
        assert!(
            producer.starts_with("manifest.toml:4: producer.pakages:"),
            "{found:?}"
        );
        assert!(producer.ends_with("did you mean 'packages'?"), "{found:?}");
    }

    #[test]
    fn a_key_far_from_every_known_one_gets_no_guess() {
        let found = warnings("[training]\nepochs = 3\n");
        assert_eq!(
            found,
            [
                "manifest.toml:1: training: unknown key: BUNDLE.md has no such top-level key, \
              so nothing reads it"
            ]
        );
    }
}
