//! The base every other module of the server shares: a batch of rows and
//! its columns, the runtime seam (`Backend`, `Predictor`), the states of a
//! served version and of a request, and who a message is about.
//!
//! It imports nothing else of the crate: the wire, the registry, the
//! inference path and the metrics all stand on it, never the reverse.
//! Its files import one another by their own paths, never through this
//! one's re-exports, so that no file of the crate imports one that imports
//! it back.

mod backend;
mod batch;
mod column;
mod state;
mod subject;

pub use backend::{Backend, BackendError, Predictor, Stop};
pub use batch::Batch;
pub(crate) use batch::supported;
pub use column::TensorData;
pub use state::{FallbackReason, ModelState, Outcome};
pub(crate) use subject::Subject;
