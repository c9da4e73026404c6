//! The Python package's `check` and this crate judge a bundle alike: every
//! error case of `python/tests/errors/` (pytest runs the Python side) fails
//! here too, in the file, at the line and with the phrase its `expect.toml`
//! gives.

use std::path::{Path, PathBuf};

use preflight_bundle::Bundle;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/tests/errors");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expect.toml").is_file())
        .collect();
    cases.sort();
    cases
}

/// The first error of the bundle, in the order a reader of the bundle meets
/// them: the manifest and model file, the fallback, the samples, the
/// hold-out, the reference.
fn first_error(dir: &Path) -> Option<String> {
    match Bundle::open(dir) {
        Ok(bundle) => bundle.first_problem(),
        Err(e) => Some(e.to_string()),
    }
}

#[derive(Debug, serde::Deserialize)]
struct Expect {
    file: String,
    line: Option<u64>,
    contains: String,
}

#[test]
fn every_python_error_case_is_an_error_here_too() {
    let cases = cases();
    assert!(cases.len() >= 10, "only {} cases", cases.len());
    for case in cases {
        let text = std::fs::read_to_string(case.join("expect.toml")).expect("expect.toml");
        let expect: Expect =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}/expect.toml: {e}", case.display()));
        let error = first_error(&case.join("1"))
            .unwrap_or_else(|| panic!("{}: the bundle crate finds no error", case.display()));
        let name = case.display();
        assert!(
            error.contains(&expect.file),
            "{name}: not in {}: {error}",
            expect.file
        );
        if let Some(line) = expect.line {
            let at = format!("{}:{line}:", expect.file);
            assert!(error.contains(&at), "{name}: not at {at}: {error}");
        }
        assert!(
            error.contains(&expect.contains),
            "{name}: no {:?} in: {error}",
            expect.contains
        );
    }
}

/// Every bundle of `python/tests/agree/` (written by the Python package from
/// unrounded floats: the diabetes data, a 115-column frame) is accepted here
/// whole, as the Python checker accepts it: every value the package wrote,
/// bounds included, reads back as the same number.
#[test]
fn every_python_agreement_case_is_accepted_here_too() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/tests/agree");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path().join("1")))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 2, "only {} cases", cases.len());
    for case in cases {
        assert_eq!(first_error(&case), None, "{}", case.display());
    }
}
