//! The parts of an ONNX model the derived probes read, decoded with prost
//! from `onnx.proto`'s field numbers: the graph's nodes, their attributes,
//! and its initializers. Everything else in the file is passed over.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub(super) struct ModelProto {
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "7")]
    pub domain: String,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct TensorProto {
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
}

/// `TensorProto.DataType` values the probes read.
const FLOAT: i32 = 1;
const INT64: i32 = 7;
const DOUBLE: i32 = 11;
const UINT8: i32 = 2;

impl TensorProto {
    /// The tensor's values as doubles; `None` for a type the probes do not read.
    pub(super) fn values(&self) -> Option<Vec<f64>> {
        let raw = &self.raw_data;
        let from_raw = |width: usize, read: fn(&[u8]) -> f64| {
            Some(raw.chunks_exact(width).map(read).collect())
        };
        match (self.data_type, raw.is_empty()) {
            (FLOAT, true) => Some(self.float_data.iter().map(|&v| f64::from(v)).collect()),
            (FLOAT, false) => from_raw(4, |b| f64::from(f32::from_le_bytes(le(b)))),
            (DOUBLE, true) => Some(self.double_data.clone()),
            (DOUBLE, false) => from_raw(8, |b| f64::from_le_bytes(le(b))),
            (INT64, true) => Some(self.int64_data.iter().map(|&v| v as f64).collect()),
            (INT64, false) => from_raw(8, |b| i64::from_le_bytes(le(b)) as f64),
            (UINT8, false) => Some(raw.iter().map(|&b| f64::from(b)).collect()),
            // ONNX keeps UINT8 in int32_data when not raw; the modes of
            // opset 5 trees are always written raw.
            _ => None,
        }
    }
}

/// A little-endian chunk as an array; `chunks_exact` guarantees its length.
fn le<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut array = [0; N];
    array.copy_from_slice(bytes);
    array
}

impl NodeProto {
    pub(super) fn attribute(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name == name)
    }

    /// A list attribute of numbers, from its `floats`, `ints` or tensor form.
    pub(super) fn numbers(&self, name: &str) -> Option<Vec<f64>> {
        if let Some(a) = self.attribute(name) {
            if !a.floats.is_empty() {
                return Some(a.floats.iter().map(|&v| f64::from(v)).collect());
            }
            if !a.ints.is_empty() {
                return Some(a.ints.iter().map(|&v| v as f64).collect());
            }
            return a.t.as_ref().and_then(TensorProto::values);
        }
        self.attribute(&format!("{name}_as_tensor"))
            .and_then(|a| a.t.as_ref())
            .and_then(TensorProto::values)
    }

    pub(super) fn ints(&self, name: &str) -> Vec<i64> {
        self.attribute(name)
            .map(|a| a.ints.clone())
            .unwrap_or_default()
    }

    pub(super) fn strings(&self, name: &str) -> Vec<String> {
        self.attribute(name)
            .map(|a| {
                a.strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Decodes a model file's bytes.
pub(super) fn decode(bytes: &[u8]) -> Result<GraphProto, String> {
    let model = ModelProto::decode(bytes).map_err(|e| format!("not an ONNX model: {e}"))?;
    model
        .graph
        .ok_or_else(|| "the ONNX model has no graph".to_owned())
}
