//! Every committed fixture bundle is a valid bundle, and its fallback
//! reproduces the training process's linear predictions.

use std::path::Path;

use preflight_bundle::{Bundle, Repository, Tolerance, Value};

use crate::fixtures;

/// The fallback is evaluated in f64 like scikit-learn; only the order of the
/// additions differs.
const FALLBACK_PARITY: Tolerance = Tolerance {
    abs: 1e-9,
    rel: 1e-9,
};

/// Opens every version of every model in a repository and checks its files.
fn check_repository(root: &Path) -> usize {
    let repo = Repository::scan(root).unwrap_or_else(|e| panic!("{e}"));
    assert!(repo.problems().is_empty(), "{:#?}", repo.problems());
    let mut bundles = 0;
    for model in repo.models() {
        for version in &model.versions {
            check_bundle(&version.dir);
            bundles += 1;
        }
    }
    bundles
}

fn check_bundle(dir: &Path) {
    let bundle = Bundle::open(dir).unwrap_or_else(|e| panic!("{e}"));
    let samples = bundle
        .samples()
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("samples.jsonl");
    let holdout = bundle
        .holdout()
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("holdout.jsonl");
    bundle
        .reference()
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("reference.json");
    // The cities' boosters carry 500 samples and 1,000 hold-out rows; the
    // zoo's models (zoo.py) fewer, to keep the wide frame small enough to
    // commit (and the wine data has 178 rows), still enough for parity and a
    // hold-out metric.
    assert!(
        samples.len() >= 100,
        "{}: {} samples",
        dir.display(),
        samples.len()
    );
    assert!(
        holdout.len() >= 50,
        "{}: {} hold-out rows",
        dir.display(),
        holdout.len()
    );
    let nullable: Vec<usize> = (0..bundle.manifest().inputs.len())
        .filter(|&i| bundle.manifest().inputs[i].nullable)
        .collect();
    assert!(
        nullable
            .iter()
            .all(|&i| samples.iter().any(|s| s.inputs[i].is_null())),
        "{}: the samples should exercise every nullable input with a null",
        dir.display()
    );

    let Some(fallback) = bundle.fallback() else {
        // The one defect whose fallback.json is missing on purpose.
        let missing = dir
            .components()
            .any(|c| c.as_os_str() == "fallback-missing");
        assert!(missing, "{}: {:?}", dir.display(), bundle.fallback_error());
        return;
    };
    let (out, _) = bundle
        .manifest()
        .output(fallback.output())
        .expect("fallback output");
    // These defects' fallback.json is, on purpose, not the fallback the
    // training process evaluated: that is what the harness must see.
    let stale = dir.components().any(|c| {
        ["fallback-stale", "fallback-sign-flipped"].contains(&c.as_os_str().to_str().unwrap_or(""))
    });
    for sample in samples.iter().filter(|_| !stale) {
        // One value for a regression output, a classifier's probabilities.
        let expected = match &sample.fallback_outputs.as_ref().expect("fallback_outputs")[out] {
            Value::List(p) => p.clone(),
            v => vec![v.as_f64().expect("number")],
        };
        let got = fallback.predict(&sample.inputs);
        assert!(
            got.len() == expected.len()
                && got
                    .iter()
                    .zip(&expected)
                    .all(|(g, e)| FALLBACK_PARITY.accepts(*g, *e)),
            "{} row '{}': fallback gave {got:?}, the training process {expected:?}",
            dir.display(),
            sample.id
        );
    }
    let mut covered = fallback.inputs();
    covered.sort_unstable();
    let mut declared: Vec<&str> = bundle
        .manifest()
        .inputs
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    declared.sort_unstable();
    assert_eq!(
        covered,
        declared,
        "{}: the fallback covers every input",
        dir.display()
    );
}

#[test]
fn committed_models_are_valid_bundles() {
    let repo = Repository::scan(&fixtures().join("models")).expect("scan");
    assert!(repo.models().len() >= 6, "at least six cities");
    assert!(
        repo.models()
            .iter()
            .filter(|m| m.versions.len() >= 2)
            .count()
            >= 2,
        "two cities have a version 2"
    );
    assert_eq!(check_repository(&fixtures().join("models")), 21);
    for model in repo.models() {
        for version in &model.versions {
            let bundle = Bundle::open(&version.dir).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(bundle.manifest().warnings, [], "{}", version.dir.display());
        }
    }
}

#[test]
fn committed_defect_bundles_are_valid_bundles() {
    // A defect lives in what the artifact computes, never in the format: the
    // bundle itself must pass every check here (contract-misspelt's table is
    // a warning, not an error).
    let defects = fixtures().join("defects/bundles");
    for entry in std::fs::read_dir(&defects).expect("defects/bundles") {
        let path = entry.expect("entry").path();
        assert!(check_repository(&path) >= 1, "{}", path.display());
    }
}

#[test]
fn defect_catalogue_refers_to_what_exists() {
    let text =
        std::fs::read_to_string(fixtures().join("defects/catalogue.toml")).expect("catalogue");
    let catalogue: toml::Table = toml::from_str(&text).expect("catalogue parses");
    let defects = catalogue["defect"].as_array().expect("[[defect]]");
    assert!(defects.len() >= 10);
    let models = Repository::scan(&fixtures().join("models")).expect("scan");
    for defect in defects {
        let name = defect["name"].as_str().expect("name");
        let model = defect["model"].as_str().expect("model");
        assert!(
            models.model(model).is_some(),
            "{name}: model '{model}' is not in fixtures/models"
        );
        match defect["lives_in"].as_str() {
            Some("bundle") => {
                // An entry may use another entry's bundles.
                let folder = defect
                    .get("bundles")
                    .and_then(|b| b.as_str())
                    .unwrap_or(name);
                let repo = Repository::scan(&fixtures().join("defects/bundles").join(folder))
                    .expect("defect bundle");
                assert!(
                    repo.model(model).is_some(),
                    "{name}: bundles/{folder} holds no '{model}'"
                );
            }
            Some("endpoint") => assert!(
                defect["fault"].is_str(),
                "{name}: an endpoint defect names its fault"
            ),
            other => panic!("{name}: lives_in is {other:?}"),
        }
        let fails = defect["fails"].as_array().expect("fails");
        let empty = toml::Table::new();
        let reasons = defect
            .get("reasons")
            .map_or(Some(&empty), |r| r.as_table())
            .expect("reasons");
        // A control, a change the gate must let through, names what it passes.
        let passes = defect.get("passes").and_then(|p| p.as_array());
        assert!(
            !fails.is_empty() || passes.is_some_and(|p| !p.is_empty()),
            "{name}: a defect fails at least one suite, or a control passes one"
        );
        // That each is a suite, the suites crate's catalogue type checks.
        for suite in fails {
            let suite = suite.as_str().expect("suite name");
            assert!(
                reasons.contains_key(suite),
                "{name}: no reason given for '{suite}'"
            );
        }
    }
}

#[test]
fn a_model_or_bundle_folder_given_as_the_repository_says_which_to_give() {
    let repository = fixtures().join("models").canonicalize().expect("models");
    let up = repository.display();
    for (dir, says) in [
        (
            repository.join("eta-madrid"),
            format!(
                "one model's folder (its version folders hold manifest.toml), not a model \
                repository; give the repository one level up: {up}"
            ),
        ),
        (
            repository.join("eta-madrid/1"),
            format!(
                "one bundle (it holds manifest.toml), not a model repository of \
                <model>/<version>/ folders; give the repository two levels up: {up}"
            ),
        ),
    ] {
        let error = Repository::scan(&dir)
            .expect_err("not a repository")
            .to_string();
        assert!(error.ends_with(&says), "{error}");
    }
}
