//! `preflight check`: the bundle format's rules over a bundle, a model's
//! folder or a repository, with nothing served and nothing run; the same
//! rules as `python -m preflight_bundle check`.

use std::path::{Path, PathBuf};

use preflight_bundle::{Bundle, MANIFEST_FILE, Repository};

/// What one path held: each bundle's first problem (file, line and key),
/// the warnings, and the number of bundles read.
#[derive(Debug, Default)]
pub struct Checked {
    pub bundles: usize,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks every bundle under `path`: a bundle (it holds `manifest.toml`),
/// a model's folder (its version folders do) or a repository.
pub fn check(path: &Path) -> Checked {
    let mut checked = Checked::default();
    for dir in bundle_dirs(path, &mut checked.problems) {
        checked.bundles += 1;
        match Bundle::open(&dir) {
            Ok(bundle) => {
                checked
                    .warnings
                    .extend(bundle.manifest().warnings.iter().map(ToString::to_string));
                checked.problems.extend(bundle.first_problem());
            }
            Err(e) => checked.problems.push(e.to_string()),
        }
    }
    checked
}

fn bundle_dirs(path: &Path, problems: &mut Vec<String>) -> Vec<PathBuf> {
    if path.join(MANIFEST_FILE).is_file() {
        return vec![path.to_path_buf()];
    }
    let versions = version_dirs(path);
    if !versions.is_empty() {
        return versions;
    }
    match Repository::scan(path) {
        Ok(repository) => {
            problems.extend(repository.problems().iter().map(ToString::to_string));
            repository
                .models()
                .iter()
                .flat_map(|m| m.versions.iter().map(|v| v.dir.clone()))
                .collect()
        }
        Err(e) => {
            problems.push(e.to_string());
            Vec::new()
        }
    }
}

/// The version folders of a model's folder, lowest first; none elsewhere.
fn version_dirs(path: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u64>().ok()?;
            e.path()
                .join(MANIFEST_FILE)
                .is_file()
                .then(|| (version, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, dir)| dir).collect()
}
