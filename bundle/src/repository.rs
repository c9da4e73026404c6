//! A model repository: a folder of models, each a folder of numbered versions.
//!
//! ```text
//! models/
//!   eta-madrid/
//!     1/ manifest.toml model.onnx ...
//!     2/ ...
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};
use crate::manifest::is_valid_model_name;

/// The models and versions found in a repository folder.
///
/// Scanning never fails on one bad entry: a folder that is not a valid model
/// name or version is kept in [`Repository::problems`] and the rest is served,
/// because one broken bundle must not take the others down.
#[derive(Debug)]
pub struct Repository {
    root: PathBuf,
    models: Vec<ModelEntry>,
    problems: Vec<Error>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelEntry {
    pub name: String,
    pub dir: PathBuf,
    /// Sorted, lowest first.
    pub versions: Vec<VersionEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VersionEntry {
    pub version: u64,
    /// The bundle folder.
    pub dir: PathBuf,
}

/// A repository is `<model>/<version>/`: refuses the folder of one bundle,
/// or of one model (whose `folders` are its versions), with the folder to
/// give instead.
fn not_a_bundle_or_model(root: &Path, folders: &[(String, PathBuf)]) -> Result<(), Error> {
    let up = |levels: usize| {
        let absolute = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let above = absolute.ancestors().nth(levels).unwrap_or(&absolute);
        above.display().to_string()
    };
    if root.join("manifest.toml").is_file() {
        return Err(Error::invalid(
            root,
            format!(
                "this is one bundle (it holds manifest.toml), not a model repository of \
                 <model>/<version>/ folders; give the repository two levels up: {}",
                up(2)
            ),
        ));
    }
    let holds_bundles = folders
        .iter()
        .any(|(label, dir)| label.parse::<u64>().is_ok() && dir.join("manifest.toml").is_file());
    if holds_bundles {
        return Err(Error::invalid(
            root,
            format!(
                "this is one model's folder (its version folders hold manifest.toml), not a \
                 model repository; give the repository one level up: {}",
                up(1)
            ),
        ));
    }
    Ok(())
}

impl Repository {
    /// Lists the models and versions under `root`; reads no bundle.
    pub fn scan(root: &Path) -> Result<Self, Error> {
        let folders = subfolders(root)?;
        not_a_bundle_or_model(root, &folders)?;
        let mut models = Vec::new();
        let mut problems = Vec::new();
        for (name, dir) in folders {
            if !is_valid_model_name(&name) {
                problems.push(Error::invalid(
                    &dir,
                    format!(
                        "'{name}' is not a valid model name \
                    ([a-z0-9][a-z0-9._-]{{0,63}}); the folder is skipped"
                    ),
                ));
                continue;
            }
            let mut versions = Vec::new();
            for (label, version_dir) in subfolders(&dir)? {
                match label.parse::<u64>() {
                    Ok(version) if version > 0 && !label.starts_with('0') => {
                        versions.push(VersionEntry {
                            version,
                            dir: version_dir,
                        });
                    }
                    _ => problems.push(Error::invalid(
                        &version_dir,
                        format!(
                            "'{label}' is not a \
                        version (a positive integer without leading zeros); the folder is \
                        skipped"
                        ),
                    )),
                }
            }
            if versions.is_empty() {
                problems.push(Error::new(
                    ErrorKind::MissingFile,
                    &dir,
                    format!("model '{name}' has no version folder (1/, 2/, ...)"),
                ));
                continue;
            }
            versions.sort_by_key(|v| v.version);
            models.push(ModelEntry {
                name,
                dir,
                versions,
            });
        }
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            root: root.to_path_buf(),
            models,
            problems,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Valid models, sorted by name.
    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    pub fn model(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Folders that were skipped, and why.
    pub fn problems(&self) -> &[Error] {
        &self.problems
    }
}

impl ModelEntry {
    /// The highest version: the one served unless another is pinned.
    pub fn latest(&self) -> &VersionEntry {
        // A ModelEntry is only built with at least one version.
        &self.versions[self.versions.len() - 1]
    }

    pub fn version(&self, version: u64) -> Option<&VersionEntry> {
        self.versions.iter().find(|v| v.version == version)
    }
}

/// Visible subfolders of `dir` as (name, path), sorted by name. Files and
/// hidden entries (`.git`, `.DS_Store`) are not part of the layout.
fn subfolders(dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, "list the folder", e))?;
    let mut folders = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, "list the folder", e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        folders.push((name, path));
    }
    folders.sort();
    Ok(folders)
}
