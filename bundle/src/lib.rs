//! The Preflight model repository and bundle format, version 1.
//!
//! A *repository* is a folder of models; each model is a folder of numbered
//! versions; each version is a *bundle*: a `manifest.toml` and the files it
//! names (the ONNX model, the fast fallback, verification samples, hold-out
//! rows and training statistics). `docs/bundle-format.md` describes the
//! format; this crate reads and checks it, and evaluates the fallback.
//!
//! Both the server and the harness depend on this crate, and on neither each
//! other. It never runs the ONNX model: that is the job of ONNX Runtime in the
//! crates that link it.

mod bundle;
mod classes;
mod contract;
mod datatype;
mod error;
mod fallback;
mod manifest;
mod records;
mod reference;
mod repository;
mod request;
mod unknown;
mod value;

pub use bundle::{Bundle, HOLDOUT_FILE, MANIFEST_FILE, PROBES_FILE, REFERENCE_FILE, SAMPLES_FILE};
pub use classes::{Class, Classifier, arg_max};
pub use contract::{
    Contract, Direction, LatencyBudget, Metric, Monotonic, QualityBudget, SizeBudget, Tolerance,
};
pub use datatype::{Datatype, UnknownDatatype};
pub use error::{Error, ErrorKind, Location, Warning};
pub use fallback::{CategoricalTerm, Fallback, LinearFallback, NumericTerm, OTHER_CATEGORY};
pub use manifest::{Feature, Manifest, ModelInfo, Producer, Runtime, Task, is_valid_model_name};
pub use records::{Record, RecordFile, Split, parse_records, read_records};
pub use reference::{Bins, CategoricalStats, NumericStats, Reference, Stats};
pub use repository::{ModelEntry, Repository, VersionEntry};
pub use value::{DomainError, ReadError, Value};

fn fs_read_to_string(path: &std::path::Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, "read the file", e))
}
