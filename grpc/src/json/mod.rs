//! The REST (JSON) form of an inference and its gRPC form, both ways: for
//! clients that build the protocol's JSON request and send it over gRPC
//! (the load generator, tests). A null of a float input travels as NaN,
//! gRPC's missing value; values travel typed, or raw where asked.

use serde_json::{Value, json};

mod error;

pub use error::{ConvertError, Side, TensorError};

use crate::infer_parameter::ParameterChoice;
use crate::model_infer_request::InferInputTensor;
use crate::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};

/// The gRPC request that means the same as the REST request `body` to
/// `model` at `version` (empty: its default); `raw` puts the values in
/// `raw_input_contents`. A value no typed field can carry (a string in an
/// FP32 input, say) is an error naming the input and the value's position.
pub fn request_from_json(
    body: &Value,
    model: &str,
    version: &str,
    raw: bool,
) -> Result<ModelInferRequest, ConvertError> {
    let mut request = ModelInferRequest {
        model_name: model.to_owned(),
        model_version: version.to_owned(),
        id: body["id"].as_str().unwrap_or_default().to_owned(),
        ..ModelInferRequest::default()
    };
    if let Some(parameters) = body["parameters"].as_object() {
        request.parameters = parameters_from_json(parameters);
    }
    let inputs = body["inputs"].as_array().ok_or(ConvertError::NoInputs)?;
    for input in inputs {
        let name = input["name"].as_str().ok_or(ConvertError::NoName)?;
        let datatype = input["datatype"].as_str().unwrap_or_default();
        let mut values = Vec::new();
        flatten(&input["data"], &mut values);
        let contents =
            contents_of(datatype, &values).map_err(ConvertError::tensor(Side::Input, name))?;
        if raw {
            request.raw_input_contents.push(raw_bytes(&contents));
        }
        let shape = input["shape"].as_array().map_or_else(Vec::new, |dims| {
            dims.iter().filter_map(Value::as_i64).collect()
        });
        request.inputs.push(InferInputTensor {
            name: name.to_owned(),
            datatype: datatype.to_owned(),
            shape,
            parameters: Default::default(),
            contents: (!raw).then_some(contents),
        });
    }
    if let Some(outputs) = body["outputs"].as_array() {
        for output in outputs {
            let name = output["name"].as_str().unwrap_or_default().to_owned();
            request
                .outputs
                .push(crate::model_infer_request::InferRequestedOutputTensor {
                    name,
                    parameters: Default::default(),
                });
        }
    }
    Ok(request)
}

fn flatten<'a>(data: &'a Value, out: &mut Vec<&'a Value>) {
    match data {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other),
    }
}

/// The typed contents of `values` of `datatype`.
fn contents_of(datatype: &str, values: &[&Value]) -> Result<InferTensorContents, TensorError> {
    let mut c = InferTensorContents::default();
    let wrong = |at: usize| TensorError::Value {
        at,
        value: values[at].clone(),
        datatype: datatype.to_owned(),
    };
    let float = |(at, v): (usize, &&Value)| match v {
        Value::Null => Ok(f64::NAN),
        v => v.as_f64().ok_or_else(|| wrong(at)),
    };
    let int = |(at, v): (usize, &&Value)| v.as_i64().ok_or_else(|| wrong(at));
    let all = values.iter().enumerate();
    match datatype {
        "FP32" => {
            c.fp32_contents = all
                .map(float)
                .map(|x| x.map(|x| x as f32))
                .collect::<Result<_, _>>()?
        }
        "FP64" => c.fp64_contents = all.map(float).collect::<Result<_, _>>()?,
        "INT64" => c.int64_contents = all.map(int).collect::<Result<_, _>>()?,
        "INT32" | "INT16" | "INT8" => {
            let narrow =
                |(at, v)| int((at, v)).and_then(|i| i32::try_from(i).map_err(|_| wrong(at)));
            c.int_contents = all.map(narrow).collect::<Result<_, _>>()?;
        }
        "BOOL" => {
            let bool = |(at, v): (usize, &&Value)| v.as_bool().ok_or_else(|| wrong(at));
            c.bool_contents = all.map(bool).collect::<Result<_, _>>()?;
        }
        "BYTES" => {
            let text = |(at, v): (usize, &&Value)| match v {
                Value::String(s) => Ok(s.as_bytes().to_vec()),
                _ => Err(wrong(at)),
            };
            c.bytes_contents = all.map(text).collect::<Result<_, _>>()?;
        }
        other => return Err(TensorError::CannotSend(other.to_owned())),
    }
    Ok(c)
}

/// Typed contents as raw bytes: little-endian, a BYTES value after its
/// 4-byte length.
fn raw_bytes(c: &InferTensorContents) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend(c.fp32_contents.iter().flat_map(|x| x.to_le_bytes()));
    bytes.extend(c.fp64_contents.iter().flat_map(|x| x.to_le_bytes()));
    bytes.extend(c.int64_contents.iter().flat_map(|x| x.to_le_bytes()));
    bytes.extend(c.int_contents.iter().flat_map(|x| x.to_le_bytes()));
    bytes.extend(c.bool_contents.iter().map(|&b| u8::from(b)));
    for text in &c.bytes_contents {
        let length = u32::try_from(text.len()).unwrap_or(u32::MAX);
        bytes.extend(length.to_le_bytes());
        bytes.extend(text);
    }
    bytes
}

/// JSON `parameters` as gRPC's: booleans, strings and numbers; other
/// values have no parameter type and are left out.
pub fn parameters_from_json(
    parameters: &serde_json::Map<String, Value>,
) -> std::collections::HashMap<String, InferParameter> {
    let known = parameters
        .iter()
        .filter_map(|(name, value)| Some((name.clone(), parameter_of(value)?)));
    known.collect()
}

fn parameter_of(value: &Value) -> Option<InferParameter> {
    let choice = match value {
        Value::Bool(b) => ParameterChoice::BoolParam(*b),
        Value::String(s) => ParameterChoice::StringParam(s.clone()),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => ParameterChoice::Int64Param(i),
            (None, Some(u)) => ParameterChoice::Uint64Param(u),
            (None, None) => ParameterChoice::DoubleParam(n.as_f64()?),
        },
        _ => return None,
    };
    Some(InferParameter {
        parameter_choice: Some(choice),
    })
}

/// A gRPC answer as REST's JSON answer body: `model_name`,
/// `model_version` and `id` where they are not empty, `parameters`, and
/// each output's `name`, `datatype`, `shape` and flat `data` (an FP32 value
/// as the f64 of its f32). An output whose raw bytes do not fit its
/// datatype is an error.
pub fn response_to_json(response: &ModelInferResponse) -> Result<Value, ConvertError> {
    let mut outputs = Vec::with_capacity(response.outputs.len());
    for (i, output) in response.outputs.iter().enumerate() {
        let contents = match response.raw_output_contents.get(i) {
            Some(raw) => contents_of_raw(&output.datatype, raw),
            None => Ok(output.contents.clone().unwrap_or_default()),
        };
        let data = contents
            .and_then(|contents| values_of(&output.datatype, &contents))
            .map_err(ConvertError::tensor(Side::Output, &output.name))?;
        outputs.push(json!({
            "name": output.name,
            "datatype": output.datatype,
            "shape": output.shape,
            "data": data,
        }));
    }
    let mut body = json!({
        "model_name": response.model_name,
        "outputs": outputs,
    });
    // proto3 cannot tell a string left out from an empty one: empty is
    // "not said", as JSON's null or absence is.
    if !response.model_version.is_empty() {
        body["model_version"] = json!(response.model_version);
    }
    if !response.id.is_empty() {
        body["id"] = json!(response.id);
    }
    let parameters = parameters_to_json(&response.parameters);
    if !parameters.is_empty() {
        body["parameters"] = Value::Object(parameters);
    }
    Ok(body)
}

/// The values of typed contents of `datatype`, as JSON writes them.
fn values_of(datatype: &str, c: &InferTensorContents) -> Result<Vec<Value>, TensorError> {
    Ok(match datatype {
        "FP32" => c
            .fp32_contents
            .iter()
            .map(|&x| json!(f64::from(x)))
            .collect(),
        "FP64" => c.fp64_contents.iter().map(|&x| json!(x)).collect(),
        "INT64" => c.int64_contents.iter().map(|&x| json!(x)).collect(),
        "INT32" | "INT16" | "INT8" => c.int_contents.iter().map(|&x| json!(x)).collect(),
        "BOOL" => c.bool_contents.iter().map(|&x| json!(x)).collect(),
        "BYTES" => (c.bytes_contents.iter())
            .map(|b| json!(String::from_utf8_lossy(b)))
            .collect(),
        other => return Err(TensorError::CannotRead(other.to_owned())),
    })
}

fn contents_of_raw(datatype: &str, raw: &[u8]) -> Result<InferTensorContents, TensorError> {
    fn fixed<const N: usize, T>(
        raw: &[u8],
        read: impl Fn([u8; N]) -> T,
    ) -> Result<Vec<T>, TensorError> {
        let (values, rest) = raw.as_chunks::<N>();
        if !rest.is_empty() {
            return Err(TensorError::Partial {
                len: raw.len(),
                size: N,
            });
        }
        Ok(values.iter().map(|&b| read(b)).collect())
    }
    let mut c = InferTensorContents::default();
    match datatype {
        "FP32" => c.fp32_contents = fixed(raw, f32::from_le_bytes)?,
        "FP64" => c.fp64_contents = fixed(raw, f64::from_le_bytes)?,
        "INT64" => c.int64_contents = fixed(raw, i64::from_le_bytes)?,
        "INT32" => c.int_contents = fixed(raw, i32::from_le_bytes)?,
        "BOOL" => c.bool_contents = raw.iter().map(|&b| b != 0).collect(),
        "BYTES" => {
            let mut rest = raw;
            while !rest.is_empty() {
                let Some((length, tail)) = rest.split_first_chunk::<4>() else {
                    return Err(TensorError::CutLength);
                };
                let length = u32::from_le_bytes(*length) as usize;
                let (text, tail) = tail.split_at_checked(length).ok_or(TensorError::CutValue)?;
                c.bytes_contents.push(text.to_vec());
                rest = tail;
            }
        }
        other => return Err(TensorError::CannotRead(other.to_owned())),
    }
    Ok(c)
}

/// The REST (JSON) request a gRPC request means, and the REST path it goes
/// to: the inverse of [`request_from_json`], a float's NaN written as null.
pub fn request_to_json(request: &ModelInferRequest) -> Result<(String, Value), ConvertError> {
    let raw = !request.raw_input_contents.is_empty();
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for (i, input) in request.inputs.iter().enumerate() {
        let contents = match request.raw_input_contents.get(i) {
            Some(bytes) => contents_of_raw(&input.datatype, bytes),
            None if raw => Err(TensorError::NoRaw),
            None => Ok(input.contents.clone().unwrap_or_default()),
        };
        // A float's NaN is written as null, as JSON has no NaN.
        let data = contents
            .and_then(|c| values_of(&input.datatype, &c))
            .map_err(ConvertError::tensor(Side::Input, &input.name))?;
        inputs.push(json!({
            "name": input.name,
            "datatype": input.datatype,
            "shape": input.shape,
            "data": data,
        }));
    }
    let mut body = json!({ "inputs": inputs });
    if !request.id.is_empty() {
        body["id"] = json!(request.id);
    }
    let parameters = parameters_to_json(&request.parameters);
    if !parameters.is_empty() {
        body["parameters"] = Value::Object(parameters);
    }
    if !request.outputs.is_empty() {
        let names = request.outputs.iter().map(|o| json!({ "name": o.name }));
        body["outputs"] = Value::Array(names.collect());
    }
    let model = &request.model_name;
    let path = match request.model_version.as_str() {
        "" => format!("/v2/models/{model}/infer"),
        version => format!("/v2/models/{model}/versions/{version}/infer"),
    };
    Ok((path, body))
}

/// The gRPC answer REST's JSON answer `body` means: the inverse of
/// [`response_to_json`].
pub fn response_from_json(body: &Value) -> Result<ModelInferResponse, ConvertError> {
    let text = |key: &str| body[key].as_str().map(str::to_owned).unwrap_or_default();
    let mut response = ModelInferResponse {
        model_name: text("model_name"),
        model_version: match &body["model_version"] {
            Value::Number(n) => n.to_string(),
            _ => text("model_version"),
        },
        id: text("id"),
        ..ModelInferResponse::default()
    };
    if let Some(parameters) = body["parameters"].as_object() {
        response.parameters = parameters_from_json(parameters);
    }
    let outputs = body["outputs"].as_array().ok_or(ConvertError::NoOutputs)?;
    for output in outputs {
        let name = output["name"].as_str().unwrap_or_default();
        let datatype = output["datatype"].as_str().unwrap_or_default();
        let mut values = Vec::new();
        flatten(&output["data"], &mut values);
        let contents =
            contents_of(datatype, &values).map_err(ConvertError::tensor(Side::Output, name))?;
        let shape = output["shape"].as_array().map_or_else(Vec::new, |dims| {
            dims.iter().filter_map(Value::as_i64).collect()
        });
        response
            .outputs
            .push(crate::model_infer_response::InferOutputTensor {
                name: name.to_owned(),
                datatype: datatype.to_owned(),
                shape,
                parameters: Default::default(),
                contents: Some(contents),
            });
    }
    Ok(response)
}

/// gRPC `parameters` as JSON's; a double that is not finite is null.
pub fn parameters_to_json(
    parameters: &std::collections::HashMap<String, InferParameter>,
) -> serde_json::Map<String, Value> {
    let known = parameters.iter().filter_map(|(name, p)| {
        let value = match p.parameter_choice.clone()? {
            ParameterChoice::BoolParam(b) => json!(b),
            ParameterChoice::Int64Param(i) => json!(i),
            ParameterChoice::StringParam(s) => json!(s),
            ParameterChoice::DoubleParam(x) => json!(x),
            ParameterChoice::Uint64Param(u) => json!(u),
        };
        Some((name.clone(), value))
    });
    known.collect()
}
