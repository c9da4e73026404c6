//! Why a message cannot be carried between its REST and gRPC forms.

use serde_json::Value;

/// Why a message cannot be carried to its other form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConvertError {
    #[error("the request has no inputs")]
    NoInputs,
    #[error("an input has no name")]
    NoName,
    #[error("the answer has no outputs")]
    NoOutputs,
    #[error("{side} '{name}' {error}")]
    Tensor {
        side: Side,
        name: String,
        error: TensorError,
    },
}

/// Which tensors of a message: the request's inputs or the answer's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Input,
    Output,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Input => "input",
            Side::Output => "output",
        })
    }
}

/// What is wrong with one tensor; the text continues "input 'x' ".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    #[error("value {at}: {value} cannot travel as {datatype}")]
    Value {
        at: usize,
        value: Value,
        datatype: String,
    },
    #[error("has datatype {0}, which this client cannot send over gRPC")]
    CannotSend(String),
    #[error("has datatype {0}, which this client cannot read")]
    CannotRead(String),
    #[error("has {len} raw bytes, not a whole number of {size}-byte values")]
    Partial { len: usize, size: usize },
    #[error("ends inside a BYTES value's length")]
    CutLength,
    #[error("has a BYTES value longer than what is left")]
    CutValue,
    #[error("has no raw contents")]
    NoRaw,
}

impl ConvertError {
    /// The mistake of a tensor, `name` of `side`.
    pub(super) fn tensor(side: Side, name: &str) -> impl FnOnce(TensorError) -> Self {
        move |error| ConvertError::Tensor {
            side,
            name: name.to_owned(),
            error,
        }
    }
}
