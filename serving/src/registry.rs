//! The models being served: loaded from the repository at start, swapped
//! whole by the repository API, read by every request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use arc_swap::ArcSwap;

use preflight_bundle::{Bundle, ModelEntry, Repository};

use crate::admission::ModelLoad;
use crate::error::ApiError;
use crate::gather::Gather;
use crate::metrics::counters::Counters;
use crate::model::Backend;
use crate::model::ModelState;
use crate::model::supported;
use crate::monitor::VersionMonitor;
use crate::rollout::{Mode, Route, Shadowing};
use crate::served::{Main, Served};

/// Which versions of a model to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionPolicy {
    /// Every version in the repository; requests without a version get the highest.
    All,
    /// Only the highest version.
    Latest,
}

/// All versions of one model, which one answers requests without a
/// version, and the route that sends a share of those to a candidate.
pub(crate) struct ModelSlot {
    pub versions: BTreeMap<u64, Arc<Served>>,
    pub default_version: u64,
    pub route: Option<Arc<Route>>,
}

/// Where a request without a version goes: the version that answers, and
/// the candidate that computes it in shadow, if any.
#[derive(Debug)]
pub struct Routed {
    pub served: Arc<Served>,
    pub shadow: Option<Shadowing>,
}

/// What `POST .../route` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteRequest {
    To {
        version: u64,
        mode: Mode,
        percent: u32,
    },
    Off,
}

/// A version that is not ready, or a bundle that could not be read: what
/// readiness says when it answers 503.
#[derive(Debug, Clone)]
pub struct Unready {
    /// The model's name, or the folder that is not one, from the repository.
    pub model: String,
    pub version: Option<String>,
    /// `degraded`, `unavailable`, or `skipped` for a bundle not loaded at all.
    pub state: &'static str,
    pub reason: String,
}

/// A row of the repository index.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    pub state: ModelState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Each loaded model's slot, by name.
type Models = BTreeMap<String, Arc<ModelSlot>>;

pub struct Registry {
    root: PathBuf,
    backend: Arc<dyn Backend>,
    policy: VersionPolicy,
    load_threads: usize,
    /// Rows in each version's monitoring windows.
    monitor_window: usize,
    /// Versions whose bundle or main model failed to load, by model, since
    /// the server started.
    load_failures: std::sync::Mutex<BTreeMap<String, u64>>,
    /// The loaded models. Requests read it without a lock; a change
    /// publishes a new table whole, under `writer`.
    models: ArcSwap<Models>,
    /// Held by whoever changes `models`, so that changes never cross.
    writer: std::sync::Mutex<()>,
    /// Folders of the repository not loaded at all, with why, by path.
    skipped: RwLock<BTreeMap<PathBuf, String>>,
}

/// What loading one model's versions gave: the slot, if any version loaded,
/// and the bundles that could not be read.
struct Loaded {
    slot: Option<ModelSlot>,
    skipped: Vec<(PathBuf, String)>,
}

impl Registry {
    pub fn new(
        root: &Path,
        backend: Arc<dyn Backend>,
        policy: VersionPolicy,
        load_threads: usize,
        monitor_window: usize,
    ) -> Self {
        Self {
            root: root.to_path_buf(),
            backend,
            policy,
            load_threads: load_threads.max(1),
            monitor_window,
            load_failures: std::sync::Mutex::default(),
            models: ArcSwap::from_pointee(Models::new()),
            writer: std::sync::Mutex::default(),
            skipped: RwLock::new(BTreeMap::new()),
        }
    }

    fn count_failure(&self, model: &str) {
        let mut failures = self
            .load_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *failures.entry(model.to_owned()).or_default() += 1;
    }

    /// Failed loads by model, for `/metrics`.
    pub fn load_failures(&self) -> Vec<(String, u64)> {
        let failures = self
            .load_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        failures.iter().map(|(m, n)| (m.clone(), *n)).collect()
    }

    pub fn platform(&self) -> &'static str {
        self.backend.platform()
    }

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

    /// Every loaded version that is not `ready`, and every folder that could
    /// not be loaded at all: empty when the server is ready. Paths are given
    /// from the repository's root, which readiness, unauthenticated, does
    /// not disclose.
    pub fn unready(&self) -> Vec<Unready> {
        let mut unready: Vec<Unready> = self
            .served()
            .into_iter()
            .filter(|(_, _, served)| served.state() != ModelState::Ready)
            .map(|(model, version, served)| Unready {
                model,
                version: Some(version.to_string()),
                state: served.state().as_str(),
                reason: served.failure().unwrap_or_default().to_owned(),
            })
            .collect();
        if let Ok(skipped) = self.skipped.read() {
            unready.extend(skipped.iter().map(|(path, reason)| {
                Unready {
                    model: path
                        .strip_prefix(&self.root)
                        .unwrap_or(path)
                        .display()
                        .to_string(),
                    version: None,
                    state: "skipped",
                    reason: reason.clone(),
                }
            }));
        }
        unready
    }

    pub fn unload(&self, name: &str) -> Result<(), ApiError> {
        self.update(|models| models.remove(name))
            .map(drop)
            .ok_or_else(|| ApiError::NotFound(format!("model '{name}' is not loaded")))
    }

    /// Changes the model table: `change` works on a copy, which then
    /// replaces it whole, so a request sees the table before or after.
    fn update<R>(&self, change: impl FnOnce(&mut Models) -> R) -> R {
        let _writing = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut models = Models::clone(&self.models.load());
        let result = change(&mut models);
        self.models.store(Arc::new(models));
        result
    }

    /// The slot of a loaded model, held for the length of a lookup only.
    fn slot(&self, name: &str) -> Result<Arc<ModelSlot>, ApiError> {
        self.models
            .load()
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("model '{name}' is not loaded")))
    }

    /// The served version of `name`: `version` where given, else the default.
    pub fn get(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(Arc<Served>, Vec<u64>), ApiError> {
        let slot = self.slot(name)?;
        let versions: Vec<u64> = slot.versions.keys().copied().collect();
        let wanted = match version {
            None => slot.default_version,
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|v| slot.versions.contains_key(v))
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "model '{name}' has no version '{v}' loaded (loaded: {})",
                        join(&versions)
                    ))
                })?,
        };
        let served = slot.versions.get(&wanted).cloned().ok_or_else(|| {
            ApiError::NotFound(format!("model '{name}' version {wanted} is not loaded"))
        })?;
        Ok((served, versions))
    }

    /// Where a request for `name` without a version goes: the default
    /// version, or the route's candidate for its share.
    pub fn route_default(&self, name: &str) -> Result<Routed, ApiError> {
        let slot = self.slot(name)?;
        let default = slot
            .versions
            .get(&slot.default_version)
            .cloned()
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "model '{name}' version {} is not loaded",
                    slot.default_version
                ))
            })?;
        let routed = |served| Routed {
            served,
            shadow: None,
        };
        let Some(route) = &slot.route else {
            return Ok(routed(default));
        };
        let Some(candidate) = slot
            .versions
            .get(&route.candidate)
            .filter(|_| route.takes())
        else {
            return Ok(routed(default));
        };
        Ok(match route.mode {
            Mode::Canary => routed(Arc::clone(candidate)),
            Mode::Shadow => Routed {
                served: default,
                shadow: Some(Shadowing {
                    candidate: Arc::clone(candidate),
                    route: Arc::clone(route),
                }),
            },
        })
    }

    /// Sets or ends `name`'s route; a version must be loaded to be a
    /// candidate. Atomic: a request sees the old route or the new one.
    pub fn set_route(&self, name: &str, request: RouteRequest) -> Result<(), ApiError> {
        self.update(|models| Self::route_in(models, name, request))
    }

    fn route_in(models: &mut Models, name: &str, request: RouteRequest) -> Result<(), ApiError> {
        let slot = models
            .get(name)
            .ok_or_else(|| ApiError::NotFound(format!("model '{name}' is not loaded")))?;
        let route = match request {
            RouteRequest::Off => None,
            RouteRequest::To {
                version,
                mode,
                percent,
            } => {
                if !slot.versions.contains_key(&version) {
                    let loaded: Vec<u64> = slot.versions.keys().copied().collect();
                    return Err(ApiError::NotFound(format!(
                        "model '{name}' has no version {version} loaded to route to (loaded: {})",
                        join(&loaded)
                    )));
                }
                Some(Arc::new(Route::new(version, mode, percent)))
            }
        };
        let next = ModelSlot {
            versions: slot.versions.clone(),
            default_version: slot.default_version,
            route,
        };
        models.insert(name.to_owned(), Arc::new(next));
        Ok(())
    }

    /// Every model's route, with the version it serves by default.
    pub fn routes(&self) -> Vec<(String, u64, Arc<Route>)> {
        let models = self.models.load();
        models
            .iter()
            .filter_map(|(name, slot)| {
                let route = slot.route.as_ref()?;
                Some((name.clone(), slot.default_version, Arc::clone(route)))
            })
            .collect()
    }

    /// Every loaded model version and its state.
    pub fn index(&self) -> Vec<IndexEntry> {
        self.served()
            .into_iter()
            .map(|(name, version, served)| IndexEntry {
                name,
                version: version.to_string(),
                state: served.state(),
                reason: served.failure().map(str::to_owned),
            })
            .collect()
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

    /// How many loaded versions are in each state.
    pub fn states(&self) -> BTreeMap<ModelState, usize> {
        let mut counts = BTreeMap::new();
        for (_, _, served) in self.served() {
            *counts.entry(served.state()).or_default() += 1;
        }
        counts
    }

    /// Every loaded version: model name, version, and what serves it.
    pub fn served(&self) -> Vec<(String, u64, Arc<Served>)> {
        let models = self.models.load();
        models
            .iter()
            .flat_map(|(name, slot)| {
                slot.versions
                    .iter()
                    .map(move |(v, served)| (name.clone(), *v, Arc::clone(served)))
            })
            .collect()
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

pub(crate) fn join(versions: &[u64]) -> String {
    versions
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("root", &self.root)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}
