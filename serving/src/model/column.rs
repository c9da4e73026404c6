//! A column of values: one input of a batch, or one output of a run.

use serde::Serialize;

/// A tensor's values, flat. FP32 values serialise as the shortest decimal
/// that reads back as the same f32, not as the f64 they widen to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
    Text(Vec<String>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::Text(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values at `range`, copied.
    pub fn slice(&self, range: std::ops::Range<usize>) -> TensorData {
        match self {
            TensorData::F32(v) => TensorData::F32(v[range].to_vec()),
            TensorData::F64(v) => TensorData::F64(v[range].to_vec()),
            TensorData::I64(v) => TensorData::I64(v[range].to_vec()),
            TensorData::I32(v) => TensorData::I32(v[range].to_vec()),
            TensorData::Bool(v) => TensorData::Bool(v[range].to_vec()),
            TensorData::Text(v) => TensorData::Text(v[range].to_vec()),
        }
    }

    /// Whether `other` holds the same values bit for bit: NaN is NaN, and
    /// -0.0 is not 0.0.
    pub fn same_bits(&self, other: &TensorData) -> bool {
        match (self, other) {
            (TensorData::F32(a), TensorData::F32(b)) => a
                .iter()
                .map(|x| x.to_bits())
                .eq(b.iter().map(|x| x.to_bits())),
            (TensorData::F64(a), TensorData::F64(b)) => a
                .iter()
                .map(|x| x.to_bits())
                .eq(b.iter().map(|x| x.to_bits())),
            (a, b) => a == b,
        }
    }

    /// Appends `other`'s values, which are of the same type; `false`, and
    /// nothing appended, where they are not.
    pub fn extend(&mut self, other: &TensorData) -> bool {
        match (self, other) {
            (TensorData::F32(v), TensorData::F32(o)) => v.extend_from_slice(o),
            (TensorData::F64(v), TensorData::F64(o)) => v.extend_from_slice(o),
            (TensorData::I64(v), TensorData::I64(o)) => v.extend_from_slice(o),
            (TensorData::I32(v), TensorData::I32(o)) => v.extend_from_slice(o),
            (TensorData::Bool(v), TensorData::Bool(o)) => v.extend_from_slice(o),
            (TensorData::Text(v), TensorData::Text(o)) => v.extend_from_slice(o),
            _ => return false,
        }
        true
    }
}
