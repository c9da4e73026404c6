//! What can be wrong with a gRPC request's tensors, in the words a REST
//! client reads for the same mistake.

/// What is wrong with a request's tensors (the caller names the model and
/// version).
#[derive(Debug, thiserror::Error)]
pub(super) enum TensorsError {
    #[error(
        "the request has {raw} raw_input_contents for {inputs} inputs: give one per input, in \
         the order of inputs"
    )]
    RawCount { raw: usize, inputs: usize },
    #[error("input '{input}' has both contents and raw_input_contents: give one")]
    BothContents { input: String },
    #[error("input '{input}' {error}")]
    Input { input: String, error: ContentsError },
}

/// What is wrong with one tensor's values; the text continues "input 'x' ".
#[derive(Debug, thiserror::Error)]
pub(super) enum ContentsError {
    #[error("fills {stray}, but datatype {datatype} has no typed field: send it raw")]
    NoTypedField {
        stray: &'static str,
        datatype: String,
    },
    #[error("fills {stray}, but datatype {datatype} travels in {own}")]
    OtherField {
        stray: &'static str,
        datatype: String,
        own: &'static str,
    },
    #[error("has {len} bytes of raw contents, not a whole number of {size}-byte {datatype} values")]
    Partial {
        len: usize,
        size: usize,
        datatype: String,
    },
    #[error("row {row}: the raw BOOL byte is {byte}, not 0 or 1")]
    Bool { row: usize, byte: u8 },
    #[error("row {row}: {left} bytes left where a BYTES value's 4-byte length belongs")]
    NoLength { row: usize, left: usize },
    #[error("row {row}: the BYTES value's length says {length} bytes, but {left} are left")]
    Short {
        row: usize,
        length: usize,
        left: usize,
    },
    #[error("row {row}: the BYTES value is not UTF-8 text")]
    NotUtf8 { row: usize },
    #[error("row {row}: the value is NaN, a missing value, but the input is not nullable")]
    NotNullable { row: usize },
    #[error("row {row}: the value is {value}, beyond the range of finite {datatype} values")]
    Infinite {
        row: usize,
        value: f64,
        datatype: String,
    },
}

impl TensorsError {
    /// The mistake `error` in input `name`.
    pub(super) fn input(name: &str) -> impl FnOnce(ContentsError) -> Self {
        move |error| TensorsError::Input {
            input: name.to_owned(),
            error,
        }
    }
}
