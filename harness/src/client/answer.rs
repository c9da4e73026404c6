//! What an infer request got back, read against the manifest's outputs,
//! whatever carried it.

use preflight_bundle::{Manifest, Record};
use serde_json::Value;

/// Names of the `parameters` of the wire protocol that the harness reads
/// and writes (`../shared/PROTOCOL.md`, docs/serving.md).
pub mod params {
    /// Request: the main model's budget in milliseconds.
    pub const DEADLINE_MS: &str = "deadline_ms";
    /// Response: `true` when the fallback answered.
    pub const FALLBACK: &str = "fallback";
    /// Response: why the fallback answered.
    pub const FALLBACK_REASON: &str = "fallback_reason";
}

/// Why the endpoint says its fallback answered (`parameters.fallback_reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackReason {
    /// The main model returned an error.
    Error,
    /// The main model did not answer within the deadline.
    Deadline,
    /// The main model could not be loaded.
    NotLoaded,
    /// A reason this harness does not know, as the endpoint wrote it (any
    /// Open Inference Protocol server may add its own), or `unknown`.
    Other(String),
}

impl FallbackReason {
    pub fn parse(reason: &str) -> Self {
        match reason {
            "error" => FallbackReason::Error,
            "deadline" => FallbackReason::Deadline,
            "not_loaded" => FallbackReason::NotLoaded,
            other => FallbackReason::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            FallbackReason::Error => "error",
            FallbackReason::Deadline => "deadline",
            FallbackReason::NotLoaded => "not_loaded",
            FallbackReason::Other(reason) => reason,
        }
    }
}

impl std::fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the endpoint answered to one infer request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// One column per slot of the manifest's outputs (`crate::slots`: a
    /// classifier's label and each class's probability), where the answer is a 200.
    pub outputs: Vec<Vec<f64>>,
    /// `parameters.fallback_reason` where the fallback answered.
    pub fallback: Option<FallbackReason>,
    /// The error message of a non-200 answer, or why a 200 could not be read.
    pub error: Option<String>,
    /// The answer's `model_version`, where it gives one.
    pub model_version: Option<String>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status == 200 && self.error.is_none()
    }

    /// `500: internal error` or `200 but ...`: for messages.
    pub fn describe(&self) -> String {
        match &self.error {
            Some(e) => format!("{} {e}", self.status),
            None => self.status.to_string(),
        }
    }
}

/// Reads an answer into slot columns (`crate::slots`).
pub(super) fn read_answer(manifest: &Manifest, status: u16, text: &str, rows: usize) -> Answer {
    let fail = |error: String| Answer {
        status,
        outputs: Vec::new(),
        fallback: None,
        error: Some(error),
        model_version: None,
    };
    let body: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            return fail(format!(
                "body is not JSON: {}",
                text.chars().take(200).collect::<String>()
            ));
        }
    };
    if status != 200 {
        return fail(
            body["error"]
                .as_str()
                .map_or_else(|| body.to_string(), str::to_owned),
        );
    }
    let Some(outputs) = body["outputs"].as_array() else {
        let why = body["error"]
            .as_str()
            .unwrap_or("the answer has no outputs");
        return fail(why.to_owned());
    };
    let columns = match crate::slots::columns(manifest, outputs, rows) {
        Ok(columns) => columns,
        Err(why) => return fail(why),
    };
    let parameters = &body["parameters"];
    let fallback = (parameters[params::FALLBACK] == true).then(|| {
        FallbackReason::parse(
            parameters[params::FALLBACK_REASON]
                .as_str()
                .unwrap_or("unknown"),
        )
    });
    let model_version = match &body["model_version"] {
        Value::String(v) => Some(v.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Answer {
        status,
        outputs: columns,
        fallback,
        error: None,
        model_version,
    }
}

/// The expected value of slot `slot` (`crate::slots`) of a record's
/// outputs: a regression output's value, a classifier's label as its
/// class's position, or one of its probabilities.
pub fn expected(manifest: &Manifest, record: &Record, slot: usize) -> f64 {
    record
        .outputs
        .as_ref()
        .map(|o| crate::slots::values(manifest, o))
        .and_then(|v| v.get(slot).copied())
        .unwrap_or(f64::NAN)
}
