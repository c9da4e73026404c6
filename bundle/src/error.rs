//! The one error type of the crate: what went wrong, and exactly where.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with a model repository or bundle.
///
/// Its message names the file, the line where one is known, and the key, so
/// that the person who trained the model can go straight to it:
/// `models/eta-madrid/1/manifest.toml:14: inputs[1].max: 5 is below min 7`.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct Error {
    kind: ErrorKind,
    location: Location,
    message: String,
    #[source]
    source: Option<std::io::Error>,
}

/// What sort of problem an [`Error`] is, for callers that react differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file or folder could not be read.
    Io,
    /// A required file is absent.
    MissingFile,
    /// A file is not valid TOML, JSON or JSON Lines.
    Syntax,
    /// A file parses but breaks a rule of the format.
    Invalid,
    /// A sample or hold-out row does not conform to its manifest.
    Conformance,
}

/// Where an [`Error`] is: a file, and within it a line and a key where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
}

/// Something in a bundle that breaks no rule of the format but is probably
/// a mistake, such as a key the format does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        Ok(())
    }
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, file: &Path, message: impl Into<String>) -> Self {
        Self {
            kind,
            location: Location {
                file: file.to_path_buf(),
                line: None,
                key: None,
            },
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn io(file: &Path, what: &str, source: std::io::Error) -> Self {
        let kind = if source.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::MissingFile
        } else {
            ErrorKind::Io
        };
        let mut error = Self::new(kind, file, format!("cannot {what}: {source}"));
        error.source = Some(source);
        error
    }

    pub(crate) fn invalid(file: &Path, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, file, message)
    }

    pub(crate) fn at_line(mut self, line: Option<usize>) -> Self {
        self.location.line = line;
        self
    }

    pub(crate) fn at_key(mut self, key: impl Into<String>) -> Self {
        self.location.key = Some(key.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The message without the location.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The 1-based line of a byte offset in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
