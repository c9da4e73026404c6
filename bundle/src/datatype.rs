//! The tensor datatypes of the Open Inference Protocol.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An Open Inference Protocol datatype, spelled as on the wire (`FP32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bytes,
}

impl Datatype {
    pub const ALL: [Datatype; 13] = [
        Self::Bool,
        Self::Uint8,
        Self::Uint16,
        Self::Uint32,
        Self::Uint64,
        Self::Int8,
        Self::Int16,
        Self::Int32,
        Self::Int64,
        Self::Fp16,
        Self::Fp32,
        Self::Fp64,
        Self::Bytes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Uint16 => "UINT16",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp16 => "FP16",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Bytes => "BYTES",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Self::Fp16 | Self::Fp32 | Self::Fp64)
    }

    pub fn is_integer(self) -> bool {
        matches!(
            self,
            Self::Uint8
                | Self::Uint16
                | Self::Uint32
                | Self::Uint64
                | Self::Int8
                | Self::Int16
                | Self::Int32
                | Self::Int64
        )
    }

    /// Floats and integers: the types that take `min`/`max` bounds.
    pub fn is_numeric(self) -> bool {
        self.is_float() || self.is_integer()
    }

    /// The inclusive range an integer datatype holds, as `f64`.
    pub(crate) fn integer_range(self) -> Option<(f64, f64)> {
        Some(match self {
            Self::Uint8 => (0.0, f64::from(u8::MAX)),
            Self::Uint16 => (0.0, f64::from(u16::MAX)),
            Self::Uint32 => (0.0, f64::from(u32::MAX)),
            Self::Uint64 => (0.0, u64::MAX as f64),
            Self::Int8 => (f64::from(i8::MIN), f64::from(i8::MAX)),
            Self::Int16 => (f64::from(i16::MIN), f64::from(i16::MAX)),
            Self::Int32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
            Self::Int64 => (i64::MIN as f64, i64::MAX as f64),
            _ => return None,
        })
    }
}

impl fmt::Display for Datatype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown datatype name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown datatype '{0}' (expected one of BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, \
        BYTES)"
)]
pub struct UnknownDatatype(pub String);

impl FromStr for Datatype {
    type Err = UnknownDatatype;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDatatype(s.to_owned()))
    }
}
