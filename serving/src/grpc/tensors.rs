//! Tensors between gRPC's messages and the REST request and answer they
//! mean, so that both protocols decode, check and answer through the same
//! code (`crate::v2`), and a mistake reads the same over either.
//!
//! A request's values come typed (`contents`, the field of the tensor's
//! datatype) or raw (`raw_input_contents`: one little-endian byte string
//! per input; a BYTES value is a 4-byte length and its bytes). NaN in a
//! float input is a missing value: gRPC has no null.

use preflight_bundle::Manifest;
use preflight_grpc::model_infer_request::InferInputTensor;
use preflight_grpc::model_infer_response::InferOutputTensor;
use preflight_grpc::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, parameters_from_json,
    parameters_to_json,
};

use super::mistakes::{ContentsError, TensorsError};
use crate::model::TensorData;
use crate::protocol::{InferRequest, InferResponse, RequestInput, RequestOutput};
use crate::request_data::{Nesting, RequestData, Scalar};

/// A gRPC request as the REST request it means, and whether its values
/// came raw (then so does the answer's).
pub(super) struct Read {
    pub request: InferRequest,
    pub raw: bool,
}

/// Reads `message` for the model of `manifest`; on a mistake, what it is
/// (the caller names the model and version).
pub(super) fn read(message: ModelInferRequest, manifest: &Manifest) -> Result<Read, TensorsError> {
    let raw = !message.raw_input_contents.is_empty();
    if raw && message.raw_input_contents.len() != message.inputs.len() {
        return Err(TensorsError::RawCount {
            raw: message.raw_input_contents.len(),
            inputs: message.inputs.len(),
        });
    }
    let mut raws = message.raw_input_contents.into_iter();
    let mut inputs = Vec::with_capacity(message.inputs.len());
    for tensor in message.inputs {
        let name = tensor.name.clone();
        let values = match raws.next() {
            Some(bytes) => {
                if has_contents(&tensor) {
                    return Err(TensorsError::BothContents { input: name });
                }
                raw_values(&tensor.datatype, &bytes)
            }
            None => typed_values(&tensor),
        }
        .map_err(TensorsError::input(&name))?;
        // Checked only where the input and its datatype are the model's:
        // otherwise the check against the model says what is wrong.
        let feature = manifest.input(&name).map(|(_, feature)| feature);
        let values =
            match feature.filter(|f| f.datatype.as_str() == tensor.datatype) {
                Some(feature) => missing_as_null(values, &tensor.datatype, feature.nullable)
                    .map_err(|error| TensorsError::Input {
                        input: name.clone(),
                        error,
                    })?,
                None => values,
            };
        inputs.push(RequestInput {
            name,
            shape: tensor.shape,
            datatype: tensor.datatype,
            parameters: None,
            data: RequestData {
                values,
                nesting: Nesting::Flat,
            },
        });
    }
    let outputs = (!message.outputs.is_empty()).then(|| {
        let names = message
            .outputs
            .into_iter()
            .map(|o| RequestOutput { name: o.name });
        names.collect()
    });
    let request = InferRequest {
        id: Some(message.id).filter(|id| !id.is_empty()),
        parameters: Some(parameters_to_json(&message.parameters)).filter(|p| !p.is_empty()),
        inputs,
        outputs,
    };
    Ok(Read { request, raw })
}

/// Whether a tensor carries typed values.
fn has_contents(tensor: &InferInputTensor) -> bool {
    tensor.contents.as_ref().is_some_and(|c| {
        let lengths = [
            c.bool_contents.len(),
            c.int_contents.len(),
            c.int64_contents.len(),
            c.uint_contents.len(),
            c.uint64_contents.len(),
            c.fp32_contents.len(),
            c.fp64_contents.len(),
            c.bytes_contents.len(),
        ];
        lengths.iter().any(|&n| n > 0)
    })
}

/// The field of `contents` a datatype's values travel in.
fn field_of(datatype: &str) -> Option<&'static str> {
    Some(match datatype {
        "BOOL" => "bool_contents",
        "INT8" | "INT16" | "INT32" => "int_contents",
        "INT64" => "int64_contents",
        "UINT8" | "UINT16" | "UINT32" => "uint_contents",
        "UINT64" => "uint64_contents",
        "FP32" => "fp32_contents",
        "FP64" => "fp64_contents",
        "BYTES" => "bytes_contents",
        _ => return None,
    })
}

/// A tensor's typed values; every field but its datatype's must be empty.
fn typed_values(tensor: &InferInputTensor) -> Result<Vec<Scalar>, ContentsError> {
    let empty = InferTensorContents::default();
    let c = tensor.contents.as_ref().unwrap_or(&empty);
    let fields: [(&'static str, usize); 8] = [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ];
    let own = field_of(&tensor.datatype);
    if let Some(&(stray, _)) = fields.iter().find(|(f, n)| *n > 0 && Some(*f) != own) {
        let datatype = tensor.datatype.clone();
        return Err(match own {
            Some(own) => ContentsError::OtherField {
                stray,
                datatype,
                own,
            },
            None => ContentsError::NoTypedField { stray, datatype },
        });
    }
    let float = |x: f64| Scalar::Float(x);
    Ok(match tensor.datatype.as_str() {
        "BOOL" => c.bool_contents.iter().map(|&b| Scalar::Bool(b)).collect(),
        "INT8" | "INT16" | "INT32" => c
            .int_contents
            .iter()
            .map(|&i| Scalar::Int(i.into()))
            .collect(),
        "INT64" => c.int64_contents.iter().map(|&i| Scalar::Int(i)).collect(),
        "UINT8" | "UINT16" | "UINT32" => c
            .uint_contents
            .iter()
            .map(|&u| Scalar::Int(u.into()))
            .collect(),
        "UINT64" => c.uint64_contents.iter().map(|&u| Scalar::UInt(u)).collect(),
        "FP32" => c.fp32_contents.iter().map(|&x| float(x.into())).collect(),
        "FP64" => c.fp64_contents.iter().copied().map(float).collect(),
        "BYTES" => c
            .bytes_contents
            .iter()
            .enumerate()
            .map(|(row, b)| text(row, b))
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    })
}

/// A tensor's raw values, little-endian, flat.
fn raw_values(datatype: &str, bytes: &[u8]) -> Result<Vec<Scalar>, ContentsError> {
    let int = |i: i64| Scalar::Int(i);
    match datatype {
        "FP32" => fixed(datatype, bytes, |b| {
            Scalar::Float(f32::from_le_bytes(b).into())
        }),
        "FP64" => fixed(datatype, bytes, |b| Scalar::Float(f64::from_le_bytes(b))),
        "INT64" => fixed(datatype, bytes, |b| int(i64::from_le_bytes(b))),
        "INT32" => fixed(datatype, bytes, |b| int(i32::from_le_bytes(b).into())),
        "INT16" => fixed(datatype, bytes, |b| int(i16::from_le_bytes(b).into())),
        "INT8" => fixed(datatype, bytes, |b| int(i8::from_le_bytes(b).into())),
        "UINT64" => fixed(datatype, bytes, |b| Scalar::UInt(u64::from_le_bytes(b))),
        "UINT32" => fixed(datatype, bytes, |b| int(u32::from_le_bytes(b).into())),
        "UINT16" => fixed(datatype, bytes, |b| int(u16::from_le_bytes(b).into())),
        "UINT8" => fixed(datatype, bytes, |[b]: [u8; 1]| int(b.into())),
        "BOOL" => raw_bools(bytes),
        "BYTES" => raw_texts(bytes),
        // A datatype no model here takes: the check against the model's
        // datatype names it.
        _ => Ok(Vec::new()),
    }
}

/// Values of `N` bytes each.
fn fixed<const N: usize>(
    datatype: &str,
    bytes: &[u8],
    value: impl Fn([u8; N]) -> Scalar,
) -> Result<Vec<Scalar>, ContentsError> {
    let (values, rest) = bytes.as_chunks::<N>();
    if !rest.is_empty() {
        return Err(ContentsError::Partial {
            len: bytes.len(),
            size: N,
            datatype: datatype.to_owned(),
        });
    }
    Ok(values.iter().map(|&b| value(b)).collect())
}

fn raw_bools(bytes: &[u8]) -> Result<Vec<Scalar>, ContentsError> {
    let bools = bytes.iter().enumerate().map(|(row, &byte)| match byte {
        0 | 1 => Ok(Scalar::Bool(byte == 1)),
        _ => Err(ContentsError::Bool { row, byte }),
    });
    bools.collect()
}

/// BYTES values, each a 4-byte little-endian length and that many bytes.
fn raw_texts(mut bytes: &[u8]) -> Result<Vec<Scalar>, ContentsError> {
    let mut values = Vec::new();
    while !bytes.is_empty() {
        let row = values.len();
        let Some((length, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(ContentsError::NoLength {
                row,
                left: bytes.len(),
            });
        };
        let length = u32::from_le_bytes(*length) as usize;
        if rest.len() < length {
            return Err(ContentsError::Short {
                row,
                length,
                left: rest.len(),
            });
        }
        let (value, rest) = rest.split_at(length);
        values.push(text(row, value)?);
        bytes = rest;
    }
    Ok(values)
}

fn text(row: usize, bytes: &[u8]) -> Result<Scalar, ContentsError> {
    std::str::from_utf8(bytes)
        .map(|s| Scalar::Text(s.into()))
        .map_err(|_| ContentsError::NotUtf8 { row })
}

/// NaN, gRPC's missing value, as the null a nullable input takes; where the
/// input is not nullable, or the value is infinite, what is wrong.
fn missing_as_null(
    mut values: Vec<Scalar>,
    datatype: &str,
    nullable: bool,
) -> Result<Vec<Scalar>, ContentsError> {
    for (row, value) in values.iter_mut().enumerate() {
        let Scalar::Float(x) = *value else { continue };
        if x.is_nan() && nullable {
            *value = Scalar::Null;
        } else if x.is_nan() {
            return Err(ContentsError::NotNullable { row });
        } else if x.is_infinite() {
            return Err(ContentsError::Infinite {
                row,
                value: x,
                datatype: datatype.to_owned(),
            });
        }
    }
    Ok(values)
}

/// The answer as gRPC's message: each output's values typed, or raw when
/// the request's were.
pub(super) fn answer(response: InferResponse, raw: bool) -> ModelInferResponse {
    let mut raw_output_contents = Vec::new();
    let outputs = response.outputs.into_iter().map(|output| {
        let contents = if raw {
            raw_output_contents.push(raw_bytes(&output.data));
            None
        } else {
            Some(contents_of(output.data))
        };
        InferOutputTensor {
            name: output.name,
            datatype: output.datatype.to_owned(),
            shape: output.shape.iter().map(|&d| d as i64).collect(),
            parameters: Default::default(),
            contents,
        }
    });
    let outputs = outputs.collect();
    ModelInferResponse {
        model_name: response.model_name,
        model_version: response.model_version,
        id: response.id.unwrap_or_default(),
        parameters: parameters_from_json(&response.parameters.unwrap_or_default()),
        outputs,
        raw_output_contents,
    }
}

fn contents_of(data: TensorData) -> InferTensorContents {
    let mut contents = InferTensorContents::default();
    match data {
        TensorData::F32(v) => contents.fp32_contents = v,
        TensorData::F64(v) => contents.fp64_contents = v,
        TensorData::I64(v) => contents.int64_contents = v,
        TensorData::I32(v) => contents.int_contents = v,
        TensorData::Bool(v) => contents.bool_contents = v,
        TensorData::Text(v) => {
            contents.bytes_contents = v.into_iter().map(String::into_bytes).collect()
        }
    }
    contents
}

fn raw_bytes(data: &TensorData) -> Vec<u8> {
    match data {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
        TensorData::Text(v) => v
            .iter()
            .flat_map(|s| {
                let length = u32::try_from(s.len()).unwrap_or(u32::MAX);
                length.to_le_bytes().into_iter().chain(s.bytes())
            })
            .collect(),
    }
}
