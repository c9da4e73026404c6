//! Who a message is about: `model 'eta-madrid' version 1`.

use std::fmt;

use preflight_bundle::Manifest;

/// A model version, as every message of the server names it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub model: &'a str,
    pub version: u64,
}

impl<'a> Subject<'a> {
    /// The version a manifest describes.
    pub(crate) fn of(manifest: &'a Manifest) -> Self {
        Self {
            model: &manifest.model.name,
            version: manifest.model.version,
        }
    }
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model '{}' version {}", self.model, self.version)
    }
}
