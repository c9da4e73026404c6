//! Discovery of models and versions, and what it skips.

use preflight_bundle::{Bundle, Repository};

use crate::{BUNDLE_MD_FALLBACK, BUNDLE_MD_MANIFEST, bundle_dir, message};

#[test]
fn latest_version_and_skipped_folders() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for version in [1, 2, 10] {
        let manifest = BUNDLE_MD_MANIFEST.replace("version = 1", &format!("version = {version}"));
        let files = [
            ("manifest.toml", manifest.as_str()),
            ("model.onnx", ""),
            ("fallback.json", BUNDLE_MD_FALLBACK),
        ];
        bundle_dir(tmp.path(), "eta-madrid", version, &files);
    }
    std::fs::create_dir_all(tmp.path().join("Eta-Lisbon/1")).expect("mkdir");
    std::fs::create_dir_all(tmp.path().join("eta-porto/latest")).expect("mkdir");
    std::fs::create_dir_all(tmp.path().join("eta-porto/01")).expect("mkdir");
    std::fs::create_dir_all(tmp.path().join(".git/1")).expect("mkdir");
    std::fs::write(tmp.path().join("README.md"), "not a model").expect("write");

    let repo = Repository::scan(tmp.path()).expect("scan");
    let names: Vec<_> = repo.models().iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["eta-madrid"]);
    let versions: Vec<_> = repo.models()[0]
        .versions
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, [1, 2, 10], "versions sort numerically");
    assert_eq!(repo.models()[0].latest().version, 10);
    Bundle::open(&repo.models()[0].latest().dir).expect("latest opens");

    let problems: String = repo
        .problems()
        .iter()
        .map(|e| message(e, tmp.path()) + "\n")
        .collect();
    insta::assert_snapshot!(problems);
}

#[test]
fn manifest_must_match_its_folder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wrong_version = bundle_dir(
        tmp.path(),
        "eta-madrid",
        2,
        &[("manifest.toml", BUNDLE_MD_MANIFEST), ("model.onnx", "")],
    );
    let wrong_name = bundle_dir(
        tmp.path(),
        "eta-lisbon",
        1,
        &[("manifest.toml", BUNDLE_MD_MANIFEST), ("model.onnx", "")],
    );
    let no_model = bundle_dir(
        tmp.path(),
        "eta-madrid",
        1,
        &[("manifest.toml", BUNDLE_MD_MANIFEST)],
    );
    let no_fallback = bundle_dir(
        tmp.path(),
        "eta-porto",
        1,
        &[
            (
                "manifest.toml",
                &BUNDLE_MD_MANIFEST.replace("eta-madrid", "eta-porto"),
            ),
            ("model.onnx", ""),
        ],
    );
    let no_manifest = bundle_dir(tmp.path(), "eta-faro", 1, &[]);
    let report: String = [
        wrong_version,
        wrong_name,
        no_model,
        no_fallback,
        no_manifest,
    ]
    .iter()
    .map(|dir| match Bundle::open(dir) {
        // A missing fallback leaves the main model to serve alone.
        Ok(bundle) => match bundle.fallback_error() {
            Some(why) => format!(
                "opened without a fallback: {}\n",
                why.replace(&tmp.path().display().to_string(), "<tmp>")
            ),
            None => "accepted\n".to_owned(),
        },
        Err(e) => format!("{:?}: {}\n", e.kind(), message(&e, tmp.path())),
    })
    .collect();
    insta::assert_snapshot!(report);
}
