//! Loading: the whole repository at start, on several threads, and one
//! model at a time for the repository API, where a reload that would
//! serve worse than what serves now is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use preflight_bundle::{Bundle, ModelEntry, Repository};

use super::{Loaded, ModelSlot, Registry, VersionPolicy};
use crate::admission::ModelLoad;
use crate::error::ApiError;
use crate::gather::Gather;
use crate::metrics::counters::Counters;
use crate::model::supported;
use crate::monitor::VersionMonitor;
use crate::served::{Main, Served};

impl Registry {
    /// Loads every model of the repository, on `load_threads` threads. A
    /// bundle that fails is logged with its file and reason and skipped.
    pub fn load_all(&self) -> Result<(), preflight_bundle::Error> {
        let repo = Repository::scan(&self.root)?;
        let mut skipped = BTreeMap::new();
        for problem in repo.problems() {
            tracing::warn!(%problem, "skipped a folder of the model repository");
            let reason = self.relative(&problem.to_string());
            skipped.insert(problem.location().file.clone(), reason);
        }
        let entries = repo.models();
        let next = AtomicUsize::new(0);
        let loaded = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..self.load_threads.min(entries.len()) {
                scope.spawn(|| {
                    while let Some(entry) = entries.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let result = self.load_entry(entry, None);
                        if let Ok(mut loaded) = loaded.lock() {
                            loaded.push((entry.name.clone(), result));
                        }
                    }
                });
            }
        });
        let mut slots = Vec::new();
        for (name, result) in loaded.into_inner().unwrap_or_default() {
            skipped.extend(result.skipped);
            slots.extend(result.slot.map(|slot| (name, Arc::new(slot))));
        }
        self.update(|models| models.extend(slots));
        if let Ok(mut all) = self.skipped.write() {
            *all = skipped;
        }
        Ok(())
    }

    /// Loads (or reloads) one model from the repository, optionally pinning a version.
    pub fn load(&self, name: &str, pin: Option<u64>) -> Result<(), ApiError> {
        let repo = Repository::scan(&self.root)
            .map_err(|e| ApiError::Internal(format!("cannot read the model repository: {e}")))?;
        let entry = repo.model(name).ok_or_else(|| {
            ApiError::NotFound(format!("model '{name}' is not in the model repository"))
        })?;
        if let Some(v) = pin
            && entry.version(v).is_none()
        {
            return Err(ApiError::NotFound(format!(
                "model '{name}' has no version {v} in the repository"
            )));
        }
        let loaded = self.load_entry(entry, pin);
        let reasons: Vec<&str> = loaded.skipped.iter().map(|(_, r)| r.as_str()).collect();
        let Some(slot) = loaded.slot else {
            return Err(ApiError::BadRequest(format!(
                "model '{name}': no version could be loaded: {}",
                reasons.join("; ")
            )));
        };
        // Compared and replaced in one change, so two reloads cannot cross.
        self.update(|models| {
            let serving = models.get(name);
            if let Some(worse) = serving.and_then(|s| worse(s, &slot, &loaded.skipped, pin)) {
                return Err(ApiError::Conflict(format!(
                    "model '{name}': the reload would serve {worse}; the versions serving are kept"
                )));
            }
            models.insert(name.to_owned(), Arc::new(slot));
            Ok(())
        })?;
        if let Ok(mut skipped) = self.skipped.write() {
            skipped.retain(|path, _| !path.starts_with(&entry.dir));
            skipped.extend(loaded.skipped);
        }
        Ok(())
    }

    pub fn unload(&self, name: &str) -> Result<(), ApiError> {
        self.update(|models| models.remove(name))
            .map(drop)
            .ok_or_else(|| ApiError::NotFound(format!("model '{name}' is not loaded")))
    }

    fn load_entry(&self, entry: &ModelEntry, pin: Option<u64>) -> Loaded {
        // A pin makes a version the default; the policy's versions stay
        // loaded beside it, so that a rollback keeps the candidate at hand.
        let wanted: Vec<_> = match self.policy {
            VersionPolicy::Latest => entry
                .versions
                .iter()
                .filter(|e| e.version == entry.latest().version || Some(e.version) == pin)
                .collect(),
            VersionPolicy::All => entry.versions.iter().collect(),
        };
        let mut versions = BTreeMap::new();
        let mut skipped = Vec::new();
        for version in wanted {
            let started = std::time::Instant::now();
            let loaded = self.load_version(&version.dir);
            if loaded
                .as_ref()
                .map_or(true, |s| matches!(s.main, Main::Failed(_)))
            {
                self.count_failure(&entry.name);
            }
            match loaded {
                Ok(mut served) => {
                    served.load_seconds = started.elapsed().as_secs_f64();
                    if let Some(reason) = served.failure() {
                        tracing::warn!(
                            model = %entry.name,
                            version = version.version,
                            state = served.state().as_str(),
                            %reason,
                            "main model not loaded"
                        );
                    }
                    versions.insert(version.version, Arc::new(served));
                }
                Err(reason) => {
                    tracing::warn!(
                        model = %entry.name,
                        version = version.version,
                        %reason,
                        "bundle skipped"
                    );
                    skipped.push((version.dir.clone(), reason));
                }
            }
        }
        let slot = default_version(&versions, pin).map(|default_version| ModelSlot {
            versions,
            default_version,
            route: None,
        });
        Loaded { slot, skipped }
    }

    /// `text` with the repository's root left out of its paths: reasons are
    /// shown by metadata and readiness, which answer anyone.
    fn relative(&self, text: &str) -> String {
        text.replace(&format!("{}/", self.root.display()), "")
    }

    /// Opens a bundle and loads its main model. A bundle that cannot be read
    /// is an error; a main model that cannot be loaded is a `Main::Failed`,
    /// so the fallback can still serve. Reasons leave the root out.
    fn load_version(&self, dir: &Path) -> Result<Served, String> {
        let bundle = Bundle::open(dir).map_err(|e| self.relative(&e.to_string()))?;
        let manifest = bundle.manifest().clone();
        let model_bytes = bundle.model_bytes().unwrap_or(0);
        // A broken reference.json does not stop serving: drift is then not
        // measured, and the log says why.
        let reference = bundle.reference().unwrap_or_else(|error| {
            tracing::warn!(error = %self.relative(&error.to_string()), "drift is not monitored");
            None
        });
        let monitor = VersionMonitor::new(&manifest, reference.as_ref(), self.monitor_window);
        let unsupported = manifest
            .inputs
            .iter()
            .chain(&manifest.outputs)
            .find(|f| !supported(f.datatype));
        let main = match unsupported {
            Some(f) => Main::Failed(format!(
                "'{}' is {}, which preflight-serve does not take (FP32, FP64, INT32, INT64, BOOL \
                    and BYTES)",
                f.name, f.datatype
            )),
            None => match self.backend.load(&bundle) {
                Ok(predictor) => Main::Ready(predictor),
                Err(reason) => Main::Failed(self.relative(&reason.to_string())),
            },
        };
        Ok(Served {
            fallback: match bundle.fallback_error() {
                Some(error) => Err(self.relative(error)),
                None => Ok(bundle.fallback().cloned()),
            },
            manifest,
            main,
            model_bytes,
            counters: Counters::default(),
            load: ModelLoad::default(),
            gather: Gather::new(dir.to_path_buf()),
            monitor: Arc::new(monitor),
            load_seconds: 0.0,
        })
    }

    fn count_failure(&self, model: &str) {
        let mut failures = self
            .load_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *failures.entry(model.to_owned()).or_default() += 1;
    }
}

/// The version that answers requests without one: the pinned one, else the
/// highest in the best state, so that a degraded version 3 does not hide a
/// ready version 2.
fn default_version(versions: &BTreeMap<u64, Arc<Served>>, pin: Option<u64>) -> Option<u64> {
    if let Some(pin) = pin.filter(|v| versions.contains_key(v)) {
        return Some(pin);
    }
    let best = versions.values().map(|s| s.state()).min()?;
    versions
        .iter()
        .rev()
        .find(|(_, s)| s.state() == best)
        .map(|(v, _)| *v)
}

/// How `new` would serve worse than `serving`: a version, of those the
/// reload loaded (`pin`, or all), in a worse state, or still in the
/// repository but no longer readable. A version taken out of the repository
/// is not worse: it is gone on purpose. `None` when nothing is worse.
fn worse(
    serving: &ModelSlot,
    new: &ModelSlot,
    skipped: &[(PathBuf, String)],
    pin: Option<u64>,
) -> Option<String> {
    let mut worse = Vec::new();
    let reloaded = serving
        .versions
        .iter()
        .filter(|(v, _)| pin.is_none_or(|p| p == **v));
    for (version, now) in reloaded {
        match new.versions.get(version) {
            Some(next) if next.state() > now.state() => worse.push(format!(
                "version {version} {} instead of {}: {}",
                next.state().as_str(),
                now.state().as_str(),
                next.failure().unwrap_or_default()
            )),
            Some(_) => {}
            None => {
                let unreadable = skipped
                    .iter()
                    .find(|(dir, _)| dir.ends_with(version.to_string()));
                if let Some((_, why)) = unreadable {
                    worse.push(format!(
                        "without version {version}, which cannot be read: {why}"
                    ));
                }
            }
        }
    }
    (!worse.is_empty()).then(|| worse.join("; "))
}
