//! A decoded batch into the graph's input tensors, and its output tensors
//! back into typed columns.

use std::borrow::Cow;
use std::fmt::Debug;

use ort::session::{SessionInputValue, SessionOutputs};
use ort::value::{PrimitiveTensorElementType, Tensor, TensorElementType, TensorRef};

use super::binding::InputBinding;
use crate::model::{Batch, TensorData};

/// The graph's inputs for `batch`. Numeric columns are lent to ONNX Runtime
/// as they are, with no copy; text is copied into ONNX Runtime's own
/// strings, and a stacked input is built once per batch.
pub(super) fn inputs<'a>(
    binding: &'a InputBinding,
    batch: &'a Batch,
) -> ort::Result<Vec<(Cow<'a, str>, SessionInputValue<'a>)>> {
    let n = batch.rows;
    match binding {
        InputBinding::PerColumn(columns) => columns
            .iter()
            .zip(&batch.columns)
            .map(|((name, rank), column)| {
                let value = if *rank == 1 {
                    column_tensor([n], column)
                } else {
                    column_tensor([n, 1], column)
                };
                Ok((Cow::Borrowed(name.as_str()), value?))
            })
            .collect(),
        InputBinding::Stacked { name, element } => {
            let value = stacked_tensor(n, &batch.columns, *element)?;
            Ok(vec![(Cow::Borrowed(name.as_str()), value)])
        }
    }
}

fn column_tensor<const R: usize>(
    shape: [usize; R],
    column: &TensorData,
) -> ort::Result<SessionInputValue<'_>> {
    match column {
        TensorData::F32(v) => lent(shape, v),
        TensorData::F64(v) => lent(shape, v),
        TensorData::I64(v) => lent(shape, v),
        TensorData::I32(v) => lent(shape, v),
        TensorData::Bool(v) => lent(shape, v),
        TensorData::Text(v) => Tensor::from_string_array((shape, v.as_slice())).map(Into::into),
    }
}

/// Numbers lent to ONNX Runtime as they are.
fn lent<T, const R: usize>(shape: [usize; R], data: &[T]) -> ort::Result<SessionInputValue<'_>>
where
    T: PrimitiveTensorElementType + Clone + Debug + 'static,
{
    TensorRef::from_array_view((shape, data)).map(Into::into)
}

/// The columns side by side in one `[n, k]` float tensor; the binding has
/// checked at load that none of them is text.
fn stacked_tensor(
    n: usize,
    columns: &[TensorData],
    element: TensorElementType,
) -> ort::Result<SessionInputValue<'static>> {
    let k = columns.len();
    let value = |column: &TensorData, i: usize| match column {
        TensorData::F32(v) => f64::from(v[i]),
        TensorData::F64(v) => v[i],
        TensorData::I64(v) => v[i] as f64,
        TensorData::I32(v) => f64::from(v[i]),
        TensorData::Bool(v) => f64::from(u8::from(v[i])),
        TensorData::Text(_) => f64::NAN,
    };
    let rows = (0..n).flat_map(|i| columns.iter().map(move |column| (column, i)));
    Ok(if element == TensorElementType::Float32 {
        let stacked: Vec<f32> = rows.map(|(c, i)| value(c, i) as f32).collect();
        Tensor::from_array(([n, k], stacked))?.into()
    } else {
        let stacked: Vec<f64> = rows.map(|(c, i)| value(c, i)).collect();
        Tensor::from_array(([n, k], stacked))?.into()
    })
}

/// Why an output of a run cannot be read as its column.
#[derive(Debug, thiserror::Error)]
pub(super) enum OutputError {
    #[error("the graph gave no output '{0}'")]
    Missing(String),
    #[error("output '{name}': {error}")]
    Extract { name: String, error: ort::Error },
    #[error("output '{name}' holds {element:?}, which is not supported")]
    Unsupported {
        name: String,
        element: TensorElementType,
    },
}

/// Each bound output as a typed column, in manifest order.
pub(super) fn outputs(
    bound: &[(String, TensorElementType)],
    outputs: &SessionOutputs<'_>,
) -> Result<Vec<TensorData>, OutputError> {
    bound
        .iter()
        .map(|(name, element)| {
            let value = outputs
                .get(name.as_str())
                .ok_or_else(|| OutputError::Missing(name.clone()))?;
            let e = |error| OutputError::Extract {
                name: name.clone(),
                error,
            };
            Ok(match element {
                TensorElementType::Float32 => {
                    TensorData::F32(value.try_extract_tensor::<f32>().map_err(e)?.1.to_vec())
                }
                TensorElementType::Float64 => {
                    TensorData::F64(value.try_extract_tensor::<f64>().map_err(e)?.1.to_vec())
                }
                TensorElementType::Int64 => {
                    TensorData::I64(value.try_extract_tensor::<i64>().map_err(e)?.1.to_vec())
                }
                TensorElementType::Int32 => {
                    TensorData::I32(value.try_extract_tensor::<i32>().map_err(e)?.1.to_vec())
                }
                TensorElementType::Bool => {
                    TensorData::Bool(value.try_extract_tensor::<bool>().map_err(e)?.1.to_vec())
                }
                TensorElementType::String => {
                    TensorData::Text(value.try_extract_strings().map_err(e)?.1)
                }
                &element => {
                    return Err(OutputError::Unsupported {
                        name: name.clone(),
                        element,
                    });
                }
            })
        })
        .collect()
}
