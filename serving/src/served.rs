//! One served model version: its manifest, its main model and fallback,
//! and what each request to it updates (counters, load, gathering, monitor).

use std::sync::Arc;

use preflight_bundle::{Fallback, Manifest};

use crate::admission::ModelLoad;
use crate::gather::{Checked, Gather, Queued};
use crate::metrics::counters::Counters;
use crate::model::{ModelState, Predictor};
use crate::monitor::VersionMonitor;

/// One served model version.
pub struct Served {
    pub manifest: Manifest,
    pub main: Main,
    /// The fallback (`None` where the manifest names none), or why the one
    /// it names could not be loaded.
    pub fallback: Result<Option<Fallback>, String>,
    pub model_bytes: u64,
    /// Its requests, for `/metrics`; a reload starts them afresh.
    pub counters: Counters,
    /// Its rows in flight and what its runs cost, for admission.
    pub load: ModelLoad,
    /// Whether its small requests that overlap run together, and their queue.
    pub gather: Gather,
    /// Its inputs' and outputs' drift and its live error; a reload starts
    /// them afresh.
    pub monitor: Arc<VersionMonitor>,
    /// How long it took to load: bundle, main model and fallback.
    pub load_seconds: f64,
}

/// The main model's state.
pub enum Main {
    Ready(Arc<dyn Predictor>),
    /// Why it could not be loaded; the fallback answers, if there is one.
    Failed(String),
}

impl Served {
    pub fn state(&self) -> ModelState {
        match (&self.main, &self.fallback) {
            (Main::Ready(_), Err(_)) => ModelState::NoFallback,
            (Main::Ready(_), Ok(_)) => ModelState::Ready,
            (Main::Failed(_), Ok(Some(_))) => ModelState::Degraded,
            (Main::Failed(_), _) => ModelState::Unavailable,
        }
    }

    /// The fallback, where one answers.
    pub fn fallback(&self) -> Option<&Fallback> {
        self.fallback.as_ref().ok()?.as_ref()
    }

    /// Why the version is not `ready`: the main model's failure, else the
    /// fallback's.
    pub fn failure(&self) -> Option<&str> {
        match &self.main {
            Main::Failed(reason) => Some(reason),
            Main::Ready(_) => self.fallback.as_ref().err().map(String::as_str),
        }
    }
}

impl Queued for Served {
    fn gather(&self) -> &Gather {
        &self.gather
    }

    fn load(&self) -> &ModelLoad {
        &self.load
    }
}

impl Checked for Served {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("model", &self.manifest.model)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Main {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Main::Ready(_) => f.write_str("Ready"),
            Main::Failed(reason) => f.debug_tuple("Failed").field(reason).finish(),
        }
    }
}
