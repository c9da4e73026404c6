//! Integration tests of the bundle format: one binary, a module per feature.

mod examples;
mod fallback;
mod fixtures;
mod fuzz_corpus;
mod manifest;
mod python_agreement;
mod records;
mod repository;

use std::path::{Path, PathBuf};

/// The manifest example of BUNDLE.md, verbatim.
pub const BUNDLE_MD_MANIFEST: &str = include_str!("data/bundle-md-manifest.toml");

/// The fallback example of BUNDLE.md, verbatim.
pub const BUNDLE_MD_FALLBACK: &str = include_str!("data/bundle-md-fallback.json");

/// Writes `files` into a fresh bundle folder `<tmp>/<model>/<version>/`.
pub fn bundle_dir(tmp: &Path, model: &str, version: u64, files: &[(&str, &str)]) -> PathBuf {
    let dir = tmp.join(model).join(version.to_string());
    std::fs::create_dir_all(&dir).expect("create bundle folder");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write bundle file");
    }
    dir
}

/// An error message with the temporary folder replaced, so it can be snapshotted.
pub fn message(error: &preflight_bundle::Error, tmp: &Path) -> String {
    error
        .to_string()
        .replace(&tmp.display().to_string(), "<tmp>")
}

/// The workspace's `fixtures/` folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}
