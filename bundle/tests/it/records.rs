//! Samples and hold-out rows: each row that does not conform to the manifest
//! is refused with its line, row id and input.

use std::path::Path;

use preflight_bundle::{Manifest, RecordFile, parse_records};

use crate::BUNDLE_MD_MANIFEST;

const GOOD: &str = concat!(
    r#"{"id": "s1", "inputs": {"distance_km": 3.2, "hour": 13, "vehicle": "car", "#,
    r#""prep_time_min": null}, "outputs": {"eta_minutes": 24.71}}"#,
);

/// Puts each case after a good row and lists the outcome, one line per case.
fn check(file: RecordFile, cases: &[(&str, &str)]) -> String {
    let manifest =
        Manifest::parse(BUNDLE_MD_MANIFEST, Path::new("manifest.toml")).expect("manifest");
    cases
        .iter()
        .map(|(name, row)| {
            let text = format!("{GOOD}\n{row}\n");
            match parse_records(&text, Path::new("samples.jsonl"), &manifest, file) {
                Ok(rows) => format!("{name}: accepted {} rows\n", rows.len()),
                Err(e) => format!("{name}: {e}\n"),
            }
        })
        .collect()
}

#[test]
fn bad_samples() {
    let row = |inputs: &str| {
        format!(r#"{{"id": "s2", "inputs": {{{inputs}}}, "outputs": {{"eta_minutes": 20.0}}}}"#)
    };
    let ok = r#""distance_km": 3.2, "hour": 13, "vehicle": "car", "prep_time_min": 4.5"#;
    let cases: Vec<(&str, String)> = vec![
        ("valid", row(ok)),
        ("blank line", String::new()),
        ("not json", "{\"id\": \"s2\", \"inputs\": {".to_owned()),
        (
            "missing input",
            row(r#""distance_km": 3.2, "hour": 13, "vehicle": "car""#),
        ),
        ("unknown input", row(&format!(r#"{ok}, "speed": 3"#))),
        (
            "null in non-nullable",
            row(r#""distance_km": null, "hour": 13, "vehicle": "car", "prep_time_min": 4.5"#),
        ),
        (
            "float for INT64",
            row(r#""distance_km": 3.2, "hour": 13.5, "vehicle": "car", "prep_time_min": 4.5"#),
        ),
        (
            "string for FP32",
            row(r#""distance_km": "3.2", "hour": 13, "vehicle": "car", "prep_time_min": 4.5"#),
        ),
        (
            "NaN as a string",
            row(r#""distance_km": "NaN", "hour": 13, "vehicle": "car", "prep_time_min": 4.5"#),
        ),
        (
            "above max",
            row(r#""distance_km": 151, "hour": 13, "vehicle": "car", "prep_time_min": 4.5"#),
        ),
        (
            "below min",
            row(r#""distance_km": 3.2, "hour": -1, "vehicle": "car", "prep_time_min": 4.5"#),
        ),
        (
            "unknown category",
            row(r#""distance_km": 3.2, "hour": 13, "vehicle": "scooter", "prep_time_min": 4.5"#),
        ),
        (
            "no outputs",
            format!(r#"{{"id": "s2", "inputs": {{{ok}}}}}"#),
        ),
        (
            "output out of range",
            concat!(
                r#"{"id": "s2", "inputs": {"distance_km": 3.2, "hour": 13, "vehicle": "car", "#,
                r#""prep_time_min": 4.5}, "outputs": {"eta_minutes": 900}}"#,
            )
            .to_owned(),
        ),
        ("repeated id", GOOD.to_owned()),
    ];
    let cases: Vec<(&str, &str)> = cases.iter().map(|(n, r)| (*n, r.as_str())).collect();
    insta::assert_snapshot!(check(RecordFile::Samples, &cases));
}

#[test]
fn holdout_rows_need_a_target() {
    let manifest =
        Manifest::parse(BUNDLE_MD_MANIFEST, Path::new("manifest.toml")).expect("manifest");
    let error = parse_records(
        GOOD,
        Path::new("holdout.jsonl"),
        &manifest,
        RecordFile::Holdout,
    )
    .expect_err("no target");
    assert_eq!(
        error.to_string(),
        "holdout.jsonl:1: target: row 's1' has no target; a hold-out row needs the true value"
    );
    let empty = parse_records(
        "\n\n",
        Path::new("holdout.jsonl"),
        &manifest,
        RecordFile::Holdout,
    )
    .expect_err("empty");
    assert_eq!(empty.to_string(), "holdout.jsonl: the file has no rows");
}

#[test]
fn probe_rows_name_the_split_they_sit_beside() {
    let manifest =
        Manifest::parse(BUNDLE_MD_MANIFEST, Path::new("manifest.toml")).expect("manifest");
    let parse = |text: &str| {
        parse_records(
            text,
            Path::new("probes.jsonl"),
            &manifest,
            RecordFile::Probes,
        )
    };
    let open = GOOD.strip_suffix('}').expect("an object");
    let probe = |split: &str| format!("{open}, \"probe\": {split}}}");
    let rows = parse(&probe(
        r#"{"input": "distance_km", "column": 1, "threshold": 6.5}"#,
    ))
    .expect("a probe row");
    let split = rows[0].probe.as_ref().expect("its split");
    assert_eq!(
        (split.input.as_str(), split.column, split.threshold),
        ("distance_km", 1, 6.5)
    );

    let refused = |text: &str| parse(text).expect_err("refused").to_string();
    assert_eq!(
        refused(GOOD),
        "probes.jsonl:1: probe: row 's1' has no probe; a probe row needs the training process's \
            prediction and the split it sits at"
    );
    assert_eq!(
        refused(&probe(
            r#"{"input": "speed", "column": 1, "threshold": 6.5}"#
        )),
        "probes.jsonl:1: probe: row 's1': 'probe.input' = 'speed' is not declared in the manifest"
    );
    let misspelt = refused(&probe(r#"{"input": "hour", "col": 1, "threshold": 6.5}"#));
    assert!(
        misspelt.starts_with(
            "probes.jsonl:1: probe: row 's1': 'probe' is not {input, column, threshold}: unknown \
                field `col`"
        ),
        "{misspelt}"
    );
}
