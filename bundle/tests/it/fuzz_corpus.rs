//! The `manifest` fuzz target's property, without AFL++: no seed of
//! `fuzz/corpus/manifest` and no input AFL++ found that broke it
//! (`fuzz/regressions/manifest`, when there are any) makes the parser, or the
//! text of its errors and warnings, panic; an error is a fine answer.
//! `fuzz/` is outside the workspace; its check is repeated here.

use std::path::Path;

use preflight_bundle::Manifest;
use preflight_testkit::fuzz_inputs;

#[test]
fn no_seed_or_regression_makes_the_manifest_parser_panic() {
    let seeds = fuzz_inputs("corpus", "manifest");
    assert!(!seeds.is_empty(), "no seeds in fuzz/corpus/manifest");
    for file in seeds.iter().chain(&fuzz_inputs("regressions", "manifest")) {
        let name = file.display();
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The target skips bytes that are not UTF-8: so does the replay.
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let parsed = std::panic::catch_unwind(|| {
            match Manifest::parse(text, Path::new("fuzz/manifest.toml")) {
                Ok(manifest) => manifest.warnings.iter().map(|w| w.to_string()).collect(),
                Err(error) => vec![error.to_string()],
            }
        });
        assert!(parsed.is_ok(), "{name}: the manifest parser panicked");
    }
}
