//! What configures a server, apart from how it listens: the repository,
//! which versions to load, and every bound on requests and work.

use std::path::PathBuf;
use std::time::Duration;

use crate::admission::AdmissionLimits;
use crate::error::{ApiError, AppResult};
use crate::monitor::MonitorLimits;
use crate::registry::VersionPolicy;

/// Everything that configures a server, apart from how it listens.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub models: PathBuf,
    pub version_policy: VersionPolicy,
    pub body: BodyLimits,
    pub max_rows: usize,
    /// Who may call the repository API (load, unload, index).
    pub repository: RepositoryAccess,
    pub load_threads: usize,
    /// How much work is taken on at once; see docs/serving.md, "Admission".
    pub admission: AdmissionLimits,
    /// What the monitor keeps; see docs/serving.md, "Monitoring".
    pub monitor: MonitorLimits,
}

/// Who may call the repository API, which changes what is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryAccess {
    /// Nobody: `preflight-serve` without a token, unless told otherwise.
    Off,
    /// Anybody who can reach the server: for a trusted network, and for a
    /// server inside its caller's own process.
    Open,
    /// Whoever sends `Authorization: Bearer <token>`.
    Token(String),
}

impl RepositoryAccess {
    /// Whether a call that sent `authorization` (the value of its
    /// `Authorization` header, or its gRPC metadata) may change what is
    /// served.
    pub(crate) fn authorize(&self, authorization: Option<&str>) -> AppResult<()> {
        let token = match self {
            RepositoryAccess::Open => return Ok(()),
            RepositoryAccess::Off => {
                return Err(ApiError::Forbidden(
                    "the repository API is off: start the server with --repository-token (or \
                    PREFLIGHT_REPOSITORY_TOKEN), or --open-repository-api on a trusted network"
                        .to_owned(),
                ));
            }
            RepositoryAccess::Token(token) => token,
        };
        let given = authorization.and_then(|v| v.strip_prefix("Bearer "));
        // In constant time, so that the time of a refusal says nothing of how
        // much of a guess was right.
        let matches = given.is_some_and(|given| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                given.as_bytes(),
                token.as_bytes(),
            ))
        });
        if matches {
            Ok(())
        } else {
            Err(ApiError::Unauthorized(
                "the repository API needs 'Authorization: Bearer <token>' with the server's token"
                    .to_owned(),
            ))
        }
    }
}

impl ServeConfig {
    /// `preflight-serve`'s defaults for the repository at `models`, but for
    /// the repository API, open: the server of this config is its caller's.
    pub fn new(models: impl Into<PathBuf>) -> Self {
        Self {
            models: models.into(),
            version_policy: VersionPolicy::All,
            body: BodyLimits::default(),
            max_rows: 100_000,
            repository: RepositoryAccess::Open,
            load_threads: 2,
            admission: AdmissionLimits::for_this_machine(),
            monitor: MonitorLimits::default(),
        }
    }
}

/// The bounds of a request's body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Longer bodies get 413.
    pub max_bytes: usize,
    /// How long the whole body may take to arrive, once its head has.
    pub timeout: Duration,
    /// How long the body may pause between two of its pieces.
    pub idle: Duration,
}

impl Default for BodyLimits {
    /// `preflight-serve`'s defaults.
    fn default() -> Self {
        Self {
            max_bytes: 16 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            idle: Duration::from_secs(10),
        }
    }
}
