//! A batch of rows in columns, decoded from a request and checked against
//! the manifest before any model sees it.

use preflight_bundle::{Datatype, Feature, Manifest, ReadError, Value};
use serde_json::Value as Json;

use crate::error::ApiError;
use crate::model::{Batch, Subject, TensorData};
use crate::protocol::{InferRequest, RequestInput};
use crate::request_data::{Nesting, Scalar};

/// Limits on what one request may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_rows: usize,
}

/// What is wrong with one value of a request; the text continues "input
/// 'x' row r: the value", which the caller puts in front.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ValueError {
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The one mistake worth a hint: NaN and Infinity smuggled in as strings.
    #[error(
        "is the string {json}: numbers must be JSON numbers, and NaN and Infinity are not \
         JSON{hint}",
        hint = if *.nullable { "; send null for a missing value" } else { "" }
    )]
    NumberAsString { json: Json, nullable: bool },
    /// Read as the datatype, but not as the column's type (an INT32 beyond
    /// its range).
    #[error("is {json}, which does not fit in {datatype}")]
    DoesNotFit { json: Json, datatype: Datatype },
}

/// What is wrong with a tensor's datatype or shape; the text continues
/// "input 'x': ".
#[derive(Debug, thiserror::Error)]
enum ShapeError {
    #[error("datatype {given} does not match the model's {datatype}")]
    Datatype { given: String, datatype: Datatype },
    #[error("shape {0:?} is too large")]
    TooLarge(Vec<i64>),
    #[error("shape {0:?} is not [N] or [N, 1]: tabular inputs are one column per feature")]
    NotAColumn(Vec<i64>),
}

/// How a tensor's data is nested where its shape wants otherwise; the text
/// continues "input 'x' ".
#[derive(Debug, thiserror::Error)]
enum NestingError {
    #[error(
        "row 0: a list where shape {0:?} wants one value: data is flat, or one list of one \
         value per row for shape [N, 1]"
    )]
    ListForValue(Vec<i64>),
    #[error("row {row}: {found}: data is flat, or one list of one value per row for shape [N, 1]")]
    Mixed { row: usize, found: &'static str },
}

/// A value of a bundle's rows that does not decode (`decode_rows`).
#[derive(Debug, thiserror::Error)]
#[error("input '{input}' row {row}: the value {error}")]
pub(crate) struct RowError {
    input: String,
    row: usize,
    error: ValueError,
}

/// Appends checked JSON values to one column of the feature's type.
struct ColumnBuilder<'a> {
    feature: &'a Feature,
    data: TensorData,
}

impl<'a> ColumnBuilder<'a> {
    fn new(feature: &'a Feature, capacity: usize) -> Self {
        let data = match feature.datatype {
            Datatype::Fp64 => TensorData::F64(Vec::with_capacity(capacity)),
            Datatype::Int64 => TensorData::I64(Vec::with_capacity(capacity)),
            Datatype::Int32 => TensorData::I32(Vec::with_capacity(capacity)),
            Datatype::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            Datatype::Bytes => TensorData::Text(Vec::with_capacity(capacity)),
            // Load time refuses any other datatype; FP32 is the default.
            _ => TensorData::F32(Vec::with_capacity(capacity)),
        };
        Self { feature, data }
    }

    /// Reads one value of a v2 tensor. The values a column takes as they
    /// are go straight in; any other goes the way of [`Self::push`], so
    /// that both protocols accept and refuse alike, with the same words.
    fn push_scalar(&mut self, scalar: &Scalar) -> Result<(), ValueError> {
        let nullable = self.feature.nullable;
        match (&mut self.data, scalar) {
            (TensorData::F32(v), Scalar::Null) if nullable => v.push(f32::NAN),
            (TensorData::F64(v), Scalar::Null) if nullable => v.push(f64::NAN),
            (TensorData::F32(v), &Scalar::Float(x)) if x.abs() <= f64::from(f32::MAX) => {
                v.push(x as f32)
            }
            (TensorData::F32(v), &Scalar::Int(i)) if (i as f64).abs() <= f64::from(f32::MAX) => {
                v.push(i as f64 as f32)
            }
            (TensorData::F64(v), &Scalar::Float(x)) => v.push(x),
            (TensorData::F64(v), &Scalar::Int(i)) => v.push(i as f64),
            (TensorData::I64(v), &Scalar::Int(i)) => v.push(i),
            (TensorData::I32(v), &Scalar::Int(i)) if i32::try_from(i).is_ok() => v.push(i as i32),
            (TensorData::Bool(v), &Scalar::Bool(b)) => v.push(b),
            (TensorData::Text(v), Scalar::Text(s)) if !s.contains('\0') => v.push(s.to_string()),
            _ => return self.push(&scalar.to_json()),
        }
        Ok(())
    }

    /// Reads one value; on failure, why (the caller adds model, input and row).
    fn push(&mut self, json: &Json) -> Result<(), ValueError> {
        let value = self.feature.read(json).map_err(|error| match json {
            Json::String(s)
                if self.feature.datatype.is_float() && s.trim().parse::<f64>().is_ok() =>
            {
                ValueError::NumberAsString {
                    json: json.clone(),
                    nullable: self.feature.nullable,
                }
            }
            _ => ValueError::Read(error),
        })?;
        let does_not_fit = || ValueError::DoesNotFit {
            json: json.clone(),
            datatype: self.feature.datatype,
        };
        match (&mut self.data, value) {
            (TensorData::F32(v), Value::Null) => v.push(f32::NAN),
            (TensorData::F64(v), Value::Null) => v.push(f64::NAN),
            (TensorData::F32(v), Value::Float(x)) => v.push(x as f32),
            (TensorData::F64(v), Value::Float(x)) => v.push(x),
            (TensorData::I64(v), Value::Int(x)) => v.push(x),
            (TensorData::I32(v), Value::Int(x)) => {
                v.push(i32::try_from(x).map_err(|_| does_not_fit())?);
            }
            (TensorData::Bool(v), Value::Bool(x)) => v.push(x),
            (TensorData::Text(v), Value::Text(x)) => v.push(x),
            (_, _) => return Err(does_not_fit()),
        }
        Ok(())
    }
}

/// Decodes an Open Inference Protocol request: one tensor per input, shape
/// `[N]` or `[N, 1]`, every input present once, data of the declared type.
pub(crate) fn decode_tensors(
    manifest: &Manifest,
    request: &InferRequest,
    limits: Limits,
) -> Result<Batch, ApiError> {
    let who = Subject::of(manifest);
    let bad = |message: String| ApiError::BadRequest(format!("{who}: {message}"));
    for (i, input) in request.inputs.iter().enumerate() {
        if manifest.input(&input.name).is_none() {
            let known: Vec<&str> = manifest.inputs.iter().map(|f| f.name.as_str()).collect();
            return Err(bad(format!(
                "input '{}' is not an input of the model (inputs: {})",
                input.name,
                known.join(", ")
            )));
        }
        if request.inputs[..i]
            .iter()
            .any(|earlier| earlier.name == input.name)
        {
            return Err(bad(format!("input '{}' is given twice", input.name)));
        }
    }
    let mut rows = None;
    let mut columns = Vec::with_capacity(manifest.inputs.len());
    for feature in &manifest.inputs {
        let input = request
            .inputs
            .iter()
            .find(|i| i.name == feature.name)
            .ok_or_else(|| bad(format!("input '{}' is required but missing", feature.name)))?;
        let n = tensor_rows(feature, input)
            .map_err(|e| bad(format!("input '{}': {e}", feature.name)))?;
        if n > limits.max_rows {
            return Err(bad(format!(
                "input '{}' has {n} rows; this server takes at most {} per request",
                feature.name, limits.max_rows
            )));
        }
        match rows {
            None => rows = Some(n),
            Some(first) if first != n => {
                return Err(bad(format!(
                    "input '{}' has {n} rows but '{}' has {first}; every input needs one value per \
                        row",
                    feature.name, manifest.inputs[0].name
                )));
            }
            Some(_) => {}
        }
        let values = values(input).map_err(|e| bad(format!("input '{}' {e}", feature.name)))?;
        if values.len() != n {
            return Err(bad(format!(
                "input '{}' has shape {:?} but {} values",
                feature.name,
                input.shape,
                values.len()
            )));
        }
        let mut column = ColumnBuilder::new(feature, n);
        for (row, value) in values.iter().enumerate() {
            column
                .push_scalar(value)
                .map_err(|m| bad(format!("input '{}' row {row}: the value {m}", feature.name)))?;
        }
        columns.push(column.data);
    }
    let rows = rows.unwrap_or(0);
    if rows == 0 {
        return Err(bad("the request has no rows".to_owned()));
    }
    Ok(Batch { rows, columns })
}

/// Decodes rows of values in manifest input order, such as a bundle's
/// samples; the error names the input and row.
pub(crate) fn decode_rows(manifest: &Manifest, rows: &[&[Value]]) -> Result<Batch, RowError> {
    let mut columns: Vec<ColumnBuilder<'_>> = manifest
        .inputs
        .iter()
        .map(|f| ColumnBuilder::new(f, rows.len()))
        .collect();
    for (row, values) in rows.iter().enumerate() {
        for (column, value) in columns.iter_mut().zip(values.iter()) {
            column.push(&value.to_json()).map_err(|error| RowError {
                input: column.feature.name.clone(),
                row,
                error,
            })?;
        }
    }
    Ok(Batch {
        rows: rows.len(),
        columns: columns.into_iter().map(|c| c.data).collect(),
    })
}

/// Decodes KServe v1 `instances`: one JSON object per row, keyed by input name.
pub(crate) fn decode_instances(
    manifest: &Manifest,
    instances: &[Json],
    limits: Limits,
) -> Result<Batch, ApiError> {
    let who = Subject::of(manifest);
    let bad = |message: String| ApiError::BadRequest(format!("{who}: {message}"));
    if instances.is_empty() {
        return Err(bad("'instances' is empty".to_owned()));
    }
    if instances.len() > limits.max_rows {
        return Err(bad(format!(
            "{} instances; this server takes at most {} per request",
            instances.len(),
            limits.max_rows
        )));
    }
    let mut columns: Vec<ColumnBuilder<'_>> = manifest
        .inputs
        .iter()
        .map(|f| ColumnBuilder::new(f, instances.len()))
        .collect();
    for (row, instance) in instances.iter().enumerate() {
        let Json::Object(fields) = instance else {
            return Err(bad(format!(
                "instance {row} is not an object of input values"
            )));
        };
        if let Some(unknown) = fields.keys().find(|k| manifest.input(k).is_none()) {
            return Err(bad(format!(
                "instance {row}: '{unknown}' is not an input of the model"
            )));
        }
        for column in &mut columns {
            let name = &column.feature.name;
            let value = fields
                .get(name)
                .ok_or_else(|| bad(format!("input '{name}' row {row}: required but missing")))?;
            column
                .push(value)
                .map_err(|m| bad(format!("input '{name}' row {row}: the value {m}")))?;
        }
    }
    Ok(Batch {
        rows: instances.len(),
        columns: columns.into_iter().map(|c| c.data).collect(),
    })
}

/// The number of rows a tensor declares, checking its datatype and shape.
fn tensor_rows(feature: &Feature, input: &RequestInput) -> Result<usize, ShapeError> {
    if input.datatype != feature.datatype.as_str() {
        return Err(ShapeError::Datatype {
            given: input.datatype.clone(),
            datatype: feature.datatype,
        });
    }
    match input.shape.as_slice() {
        [n] | [n, 1] if *n >= 0 => {
            usize::try_from(*n).map_err(|_| ShapeError::TooLarge(input.shape.clone()))
        }
        _ => Err(ShapeError::NotAColumn(input.shape.clone())),
    }
}

/// A tensor's values in row order: `data` flat, or, for shape `[N, 1]`,
/// one list of one value per row.
fn values(input: &RequestInput) -> Result<&[Scalar], NestingError> {
    let data = &input.data;
    match data.nesting {
        Nesting::Flat => Ok(&data.values),
        Nesting::Rows if input.shape.len() == 2 => Ok(&data.values),
        Nesting::Rows => Err(NestingError::ListForValue(input.shape.clone())),
        Nesting::Bad { row, found } => Err(NestingError::Mixed { row, found }),
    }
}
