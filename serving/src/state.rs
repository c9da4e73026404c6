//! What every handler shares: the registry, the counters, admission, the
//! monitor, the shadows, the limits and the server's own lifecycle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::admission::Admission;
use crate::config::{BodyLimits, RepositoryAccess, ServeConfig};
use crate::decode::Limits;
use crate::logging::DroppedLines;
use crate::metrics::Scraped;
use crate::metrics::counters::Metrics;
use crate::model::Backend;
use crate::monitor::{Monitor, MonitorCounters};
use crate::registry::Registry;
use crate::rollout::Shadows;

/// Everything a handler needs.
#[derive(Debug)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    pub admission: Admission,
    /// Drift and live error, off the request's path.
    pub monitor: Monitor,
    /// Candidates computed in shadow, off the request's path.
    pub shadows: Shadows,
    pub limits: Limits,
    pub body: BodyLimits,
    /// Who may call the repository API.
    pub repository: RepositoryAccess,
    /// The process's log, when this server writes one.
    pub log: Option<DroppedLines>,
    /// Set once the initial load of the repository has finished.
    pub ready: AtomicBool,
    /// Set when the server starts stopping.
    pub draining: AtomicBool,
    /// Set when the drain is over: a body still arriving is not waited for.
    pub stopping: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// A state for `config`, its repository not yet loaded and not ready:
    /// call [`AppState::load`].
    pub fn new(config: &ServeConfig, backend: Arc<dyn Backend>) -> Self {
        let registry = Registry::new(
            &config.models,
            backend,
            config.version_policy,
            config.load_threads,
            config.monitor.window,
        );
        Self {
            registry: Arc::new(registry),
            metrics: Metrics::default(),
            admission: Admission::new(config.admission),
            monitor: Monitor::start(config.monitor),
            shadows: Shadows::default(),
            limits: Limits {
                max_rows: config.max_rows,
            },
            body: config.body,
            repository: config.repository.clone(),
            log: None,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }

    /// From now on readiness answers 503: the server is stopping.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// The drain is over: a request whose body is still arriving is answered
    /// 503 at once, instead of holding the shutdown for its slowest client.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Loads every model of the repository, then answers ready. A model
    /// that cannot be loaded is marked so and does not stop the others; the
    /// error is for a repository that cannot be read at all. Blocking.
    pub fn load(&self) -> Result<(), preflight_bundle::Error> {
        self.registry.load_all()?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }
}

impl Scraped for AppState {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn admission(&self) -> &Admission {
        &self.admission
    }

    fn monitor(&self) -> &MonitorCounters {
        &self.monitor.counters
    }

    fn log(&self) -> Option<&DroppedLines> {
        self.log.as_ref()
    }
}
