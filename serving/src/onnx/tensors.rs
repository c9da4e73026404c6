//! A decoded batch into the graph's input tensors, and its output tensors
//! back into typed columns.

use ort::session::SessionOutputs;
use ort::value::{DynValue, Tensor, TensorElementType};

use super::binding::InputBinding;
use crate::batch::Batch;
use crate::protocol::TensorData;

pub(super) fn inputs(
    binding: &InputBinding,
    batch: &Batch,
) -> Result<Vec<(String, DynValue)>, String> {
    let n = batch.rows;
    match binding {
        InputBinding::PerColumn(columns) => columns
            .iter()
            .zip(&batch.columns)
            .map(|((name, rank), column)| {
                let shape: Vec<usize> = if *rank == 1 { vec![n] } else { vec![n, 1] };
                Ok((name.clone(), column_tensor(shape, column)?))
            })
            .collect(),
        InputBinding::Stacked { name, element } => {
            let value = stacked_tensor(n, &batch.columns, *element)?;
            Ok(vec![(name.clone(), value)])
        }
    }
}

fn column_tensor(shape: Vec<usize>, column: &TensorData) -> Result<DynValue, String> {
    let e = |e: ort::Error| e.to_string();
    Ok(match column {
        TensorData::F32(v) => Tensor::from_array((shape, v.clone()))
            .map_err(e)?
            .into_dyn(),
        TensorData::F64(v) => Tensor::from_array((shape, v.clone()))
            .map_err(e)?
            .into_dyn(),
        TensorData::I64(v) => Tensor::from_array((shape, v.clone()))
            .map_err(e)?
            .into_dyn(),
        TensorData::I32(v) => Tensor::from_array((shape, v.clone()))
            .map_err(e)?
            .into_dyn(),
        TensorData::Bool(v) => Tensor::from_array((shape, v.clone()))
            .map_err(e)?
            .into_dyn(),
        TensorData::Text(v) => Tensor::from_string_array((shape, v.as_slice()))
            .map_err(e)?
            .into_dyn(),
    })
}

/// The columns side by side in one `[n, k]` float tensor; the binding has
/// checked at load that none of them is text.
fn stacked_tensor(
    n: usize,
    columns: &[TensorData],
    element: TensorElementType,
) -> Result<DynValue, String> {
    let e = |e: ort::Error| e.to_string();
    let k = columns.len();
    let mut stacked = vec![0.0_f64; n * k];
    for (j, column) in columns.iter().enumerate() {
        for i in 0..n {
            stacked[i * k + j] = match column {
                TensorData::F32(v) => f64::from(v[i]),
                TensorData::F64(v) => v[i],
                TensorData::I64(v) => v[i] as f64,
                TensorData::I32(v) => f64::from(v[i]),
                TensorData::Bool(v) => f64::from(u8::from(v[i])),
                TensorData::Text(_) => f64::NAN,
            };
        }
    }
    Ok(if element == TensorElementType::Float32 {
        let narrow: Vec<f32> = stacked.into_iter().map(|x| x as f32).collect();
        Tensor::from_array(([n, k], narrow)).map_err(e)?.into_dyn()
    } else {
        Tensor::from_array(([n, k], stacked)).map_err(e)?.into_dyn()
    })
}

/// Each bound output as a typed column, in manifest order.
pub(super) fn outputs(
    bound: &[(String, TensorElementType)],
    outputs: &SessionOutputs<'_>,
) -> Result<Vec<TensorData>, String> {
    bound
        .iter()
        .map(|(name, element)| {
            let value = outputs
                .get(name.as_str())
                .ok_or_else(|| format!("the graph gave no output '{name}'"))?;
            let e = |e: ort::Error| format!("output '{name}': {e}");
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
                other => {
                    return Err(format!(
                        "output '{name}' holds {other:?}, which is not supported"
                    ));
                }
            })
        })
        .collect()
}
