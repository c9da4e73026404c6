//! What a served version can do, why a fallback answered, and how a
//! request ended: the states that readiness, answers, logs and metrics
//! all say alike.

/// What a served version can do, as readiness, metadata and metrics say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    /// The main model answers.
    Ready,
    /// The main model answers, but the fallback the manifest names could
    /// not be loaded: nothing answers when the main model fails.
    #[serde(rename = "no_fallback")]
    NoFallback,
    /// The main model could not be loaded; the fallback answers.
    Degraded,
    /// Neither can answer.
    Unavailable,
}

impl ModelState {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Ready => "ready",
            ModelState::NoFallback => "no_fallback",
            ModelState::Degraded => "degraded",
            ModelState::Unavailable => "unavailable",
        }
    }

    /// Whether requests get an answer.
    pub fn answers(self) -> bool {
        self != ModelState::Unavailable
    }
}

/// Why the fallback answered instead of the main model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// The main model returned an error.
    Error,
    /// The main model did not answer within the deadline.
    Deadline,
    /// The main model could not be loaded.
    NotLoaded,
}

impl FallbackReason {
    pub const ALL: [FallbackReason; 3] = [
        FallbackReason::Error,
        FallbackReason::Deadline,
        FallbackReason::NotLoaded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Error => "error",
            FallbackReason::Deadline => "deadline",
            FallbackReason::NotLoaded => "not_loaded",
        }
    }
}

/// How an inference request ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    BadRequest,
    NotFound,
    Unauthorized,
    Unavailable,
    /// Turned away at an admission limit.
    Shed,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::BadRequest,
        Outcome::NotFound,
        Outcome::Unauthorized,
        Outcome::Unavailable,
        Outcome::Shed,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::BadRequest => "bad_request",
            Outcome::NotFound => "not_found",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Unavailable => "unavailable",
            Outcome::Shed => "shed",
            Outcome::Error => "error",
        }
    }
}
