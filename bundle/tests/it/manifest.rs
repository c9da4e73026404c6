//! The manifest's rules: each broken manifest is refused with its line and key.

use std::path::Path;

use preflight_bundle::Manifest;

use crate::BUNDLE_MD_MANIFEST;

/// Applies each case's edit to the BUNDLE.md manifest and lists the outcome,
/// one line per case, for a snapshot.
fn check(cases: &[(&str, &str, &str)]) -> String {
    cases
        .iter()
        .map(|(name, from, to)| {
            assert!(
                BUNDLE_MD_MANIFEST.contains(from),
                "case '{name}': '{from}' is not in the manifest"
            );
            let text = BUNDLE_MD_MANIFEST.replacen(from, to, 1);
            match Manifest::parse(&text, Path::new("eta-madrid/1/manifest.toml")) {
                Ok(_) => format!("{name}: accepted\n"),
                Err(e) => format!("{name}: {e}\n"),
            }
        })
        .collect()
}

#[test]
fn bad_manifests() {
    insta::assert_snapshot!(check(&[
        ("not toml", "version = 1", "version = "),
        (
            "unknown datatype",
            r#"datatype = "INT64""#,
            r#"datatype = "INTEGER""#
        ),
        (
            "model name",
            r#"name = "eta-madrid""#,
            r#"name = "Eta Madrid""#
        ),
        ("version zero", "version = 1", "version = 0"),
        ("missing task", r#"task = "regression""#, ""),
        (
            "duplicate input",
            r#"name = "hour""#,
            r#"name = "distance_km""#
        ),
        ("min above max", "max = 150.0", "max = -1.0"),
        (
            "bounds on text",
            r#"categories = ["#,
            "min = 0\ncategories = ["
        ),
        (
            "nullable integer",
            "min = 0\nmax = 23",
            "nullable = true\nmin = 0\nmax = 23"
        ),
        (
            "categories on a number",
            "max = 150.0",
            "max = 150.0\ncategories = [\"a\"]"
        ),
        (
            "empty categories",
            r#"categories = ["bicycle", "motorbike", "car", "walk"]"#,
            "categories = []"
        ),
        ("repeated category", r#""car", "walk""#, r#""car", "car""#),
        ("unknown input key", "nullable = false", "nulable = false"),
        ("unknown contract key", "p99_ms = 20.0", "p99ms = 20.0"),
        ("p50 above p99", "p50_ms = 5.0", "p50_ms = 50.0"),
        (
            "fallback rate above one",
            "p99_ms = 20.0",
            "p99_ms = 20.0, max_fallback_rate = 1.5"
        ),
        (
            "negative p50 regression",
            "p99_ms = 20.0",
            "p99_ms = 20.0, max_p50_regression = -0.1"
        ),
        (
            "metric of another task",
            r#"metric = "mae""#,
            r#"metric = "accuracy""#
        ),
        ("min bound on an error metric", "max = 6.0", "min = 6.0"),
        ("negative tolerance", "abs = 1e-3", "abs = -1e-3"),
        (
            "empty size budget",
            "size = { max_model_bytes = 5_000_000, max_growth = 0.25 }",
            "size = {}"
        ),
        (
            "monotonic unknown input",
            r#"input = "distance_km""#,
            r#"input = "distance""#
        ),
        (
            "monotonic text input",
            r#"input = "distance_km""#,
            r#"input = "vehicle""#
        ),
        (
            "monotonic direction",
            r#"direction = "increasing""#,
            r#"direction = "up""#
        ),
        (
            "model outside the bundle",
            r#"model = "model.onnx""#,
            r#"model = "../model.onnx""#
        ),
        ("zero deadline", "deadline_ms = 25", "deadline_ms = 0"),
        (
            "no outputs",
            "[[outputs]]\nname = \"eta_minutes\"",
            "[[extra]]\nname = \"eta_minutes\""
        ),
        ("no contract is fine", "[contract]", "[ignored]"),
    ]));
}

#[test]
fn integer_bounds_read_as_numbers() {
    let m = Manifest::parse(BUNDLE_MD_MANIFEST, Path::new("manifest.toml")).expect("parses");
    let (index, hour) = m.input("hour").expect("hour");
    assert_eq!(index, 1);
    assert_eq!(hour.max, Some(23.0));
}
