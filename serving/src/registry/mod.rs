//! The models being served: loaded from the repository at start, swapped
//! whole by the repository API, read by every request.

mod load;
mod route;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use arc_swap::ArcSwap;

use crate::error::ApiError;
use crate::model::{Backend, ModelState};
use crate::rollout::{Mode, Route, Shadowing};
use crate::served::Served;

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
