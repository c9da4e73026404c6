//! One bundle: a version folder holding a manifest and the files it names.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};
use crate::{Fallback, Manifest, Record, RecordFile, Reference, read_records};

pub const MANIFEST_FILE: &str = "manifest.toml";
pub const SAMPLES_FILE: &str = "samples.jsonl";
pub const HOLDOUT_FILE: &str = "holdout.jsonl";
pub const PROBES_FILE: &str = "probes.jsonl";
pub const REFERENCE_FILE: &str = "reference.json";

/// A bundle whose manifest and fallback are loaded and checked.
///
/// Samples, hold-out and reference are read on demand: a server with
/// hundreds of models needs none of them.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    manifest: Manifest,
    /// The fallback the manifest names, if any, or why it could not be loaded.
    fallback: Result<Option<Fallback>, String>,
}

impl Bundle {
    /// Opens the bundle in `dir`: `<repository>/<model>/<version>/`.
    ///
    /// Fails when the manifest is invalid, disagrees with the folder's model
    /// name or version, or names a model file that is absent. A fallback
    /// file that is absent or invalid does not fail it: the main model can
    /// still serve, and [`Bundle::fallback_error`] says why there is no
    /// fallback.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = Manifest::load(&manifest_path)?;
        check_location(dir, &manifest_path, &manifest)?;
        let named = |key: &str, file: &str| {
            if dir.join(file).is_file() {
                Ok(dir.join(file))
            } else {
                Err(Error::new(
                    ErrorKind::MissingFile,
                    &manifest_path,
                    format!("'{file}' is not in the bundle"),
                )
                .at_key(key))
            }
        };
        named("runtime.model", &manifest.runtime.model)?;
        let fallback = manifest
            .runtime
            .fallback
            .as_ref()
            .map(|file| {
                named("runtime.fallback", file).and_then(|path| Fallback::load(&path, &manifest))
            })
            .transpose()
            .map_err(|error| error.to_string());
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            fallback,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn name(&self) -> &str {
        &self.manifest.model.name
    }

    pub fn version(&self) -> u64 {
        self.manifest.model.version
    }

    pub fn fallback(&self) -> Option<&Fallback> {
        self.fallback.as_ref().ok().and_then(Option::as_ref)
    }

    /// Why the fallback the manifest names is missing or invalid, with the
    /// file, line and key.
    pub fn fallback_error(&self) -> Option<&str> {
        self.fallback.as_ref().err().map(String::as_str)
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.runtime.model)
    }

    /// The main model artifact's size in bytes.
    pub fn model_bytes(&self) -> Result<u64, Error> {
        let path = self.model_path();
        std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| Error::io(&path, "read the file's size", e))
    }

    /// The deployment verification samples, or `None` where the bundle has none.
    pub fn samples(&self) -> Result<Option<Vec<Record>>, Error> {
        self.optional(SAMPLES_FILE, |path| {
            read_records(path, &self.manifest, RecordFile::Samples)
        })
    }

    /// The probe rows at the trees' split thresholds, or `None` where the
    /// bundle has none.
    pub fn probes(&self) -> Result<Option<Vec<Record>>, Error> {
        self.optional(PROBES_FILE, |path| {
            read_records(path, &self.manifest, RecordFile::Probes)
        })
    }

    /// The hold-out rows, or `None` where the bundle has none.
    pub fn holdout(&self) -> Result<Option<Vec<Record>>, Error> {
        self.optional(HOLDOUT_FILE, |path| {
            read_records(path, &self.manifest, RecordFile::Holdout)
        })
    }

    /// The training statistics, or `None` where the bundle has none.
    pub fn reference(&self) -> Result<Option<Reference>, Error> {
        self.optional(REFERENCE_FILE, |path| Reference::load(path, &self.manifest))
    }

    /// Reads every file of the bundle in the order a reader meets them
    /// (the fallback, the samples, the probes, the hold-out, the reference; the manifest
    /// and the model file were read by [`Bundle::open`]) and returns the
    /// first problem, with its file, line and key: what `preflight check`
    /// and the Python package's `check` report.
    pub fn first_problem(&self) -> Option<String> {
        if let Some(error) = self.fallback_error() {
            return Some(error.to_owned());
        }
        let errors = [
            self.samples().err(),
            self.probes().err(),
            self.holdout().err(),
            self.reference().err(),
        ];
        errors.into_iter().flatten().next().map(|e| e.to_string())
    }

    fn optional<T>(
        &self,
        file: &str,
        read: impl FnOnce(&Path) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        let path = self.dir.join(file);
        if path.exists() {
            read(&path).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// The folder layout is part of the format: `<model>/<version>/manifest.toml`
/// must agree with the manifest, or a copy-paste would serve the wrong model.
fn check_location(dir: &Path, manifest_path: &Path, manifest: &Manifest) -> Result<(), Error> {
    let folder = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
    };
    let version_folder = folder(Some(dir));
    let model_folder = folder(dir.parent());
    let model = &manifest.model;
    if version_folder.as_deref() != Some(model.version.to_string().as_str()) {
        return Err(Error::invalid(
            manifest_path,
            format!(
                "the manifest says version {} but the bundle folder is '{}'",
                model.version,
                version_folder.unwrap_or_default()
            ),
        )
        .at_key("model.version"));
    }
    if model_folder.as_deref() != Some(model.name.as_str()) {
        return Err(Error::invalid(
            manifest_path,
            format!(
                "the manifest says model '{}' but the model folder is '{}'",
                model.name,
                model_folder.unwrap_or_default()
            ),
        )
        .at_key("model.name"));
    }
    Ok(())
}
