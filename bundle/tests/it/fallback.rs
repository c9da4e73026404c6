//! The fallback's rules: what it refuses, each with the key at fault.

use std::path::Path;

use preflight_bundle::{Fallback, Manifest};

use crate::BUNDLE_MD_MANIFEST;

/// Parses each case and lists its error, one line per case, for a snapshot.
fn check(cases: &[(&str, &str)]) -> String {
    let manifest =
        Manifest::parse(BUNDLE_MD_MANIFEST, Path::new("manifest.toml")).expect("manifest");
    cases
        .iter()
        .map(
            |(name, text)| match Fallback::parse(text, Path::new("fallback.json"), &manifest) {
                Ok(_) => format!("{name}: accepted\n"),
                Err(e) => format!("{name}: {e}\n"),
            },
        )
        .collect()
}

#[test]
fn bad_fallbacks() {
    insta::assert_snapshot!(check(&[
        (
            "unknown kind",
            r#"{"kind": "tree", "output": "eta_minutes"}"#
        ),
        ("not json", "{\"kind\": \"linear\",\n \"output\": }"),
        ("unknown output", r#"{"kind": "linear", "output": "eta"}"#),
        (
            "unknown input",
            concat!(
                r#"{"kind": "linear", "output": "eta_minutes", "numeric": {"speed": "#,
                r#"{"impute": 0, "mean": 0, "scale": 1, "coef": 1}}}"#,
            )
        ),
        (
            "zero scale",
            concat!(
                r#"{"kind": "linear", "output": "eta_minutes", "numeric": {"distance_km": "#,
                r#"{"impute": 0, "mean": 0, "scale": 0, "coef": 1}}}"#,
            )
        ),
        (
            "missing coef",
            concat!(
                r#"{"kind": "linear", "output": "eta_minutes", "numeric": {"distance_km": "#,
                r#"{"impute": 0, "mean": 0, "scale": 1}}}"#,
            )
        ),
        (
            "text as numeric",
            concat!(
                r#"{"kind": "linear", "output": "eta_minutes", "numeric": {"vehicle": "#,
                r#"{"impute": 0, "mean": 0, "scale": 1, "coef": 1}}}"#,
            )
        ),
        (
            "float as categorical",
            concat!(
                r#"{"kind": "linear", "output": "eta_minutes", "categorical": "#,
                r#"{"distance_km": {"1.0": 2.0}}}"#,
            )
        ),
        (
            "reversed clip",
            r#"{"kind": "linear", "output": "eta_minutes", "clip": [300, 0]}"#
        ),
        (
            "intercept only",
            r#"{"kind": "linear", "output": "eta_minutes", "intercept": 3}"#
        ),
    ]));
}
