//! A batch of rows in columns, as every model of the server takes them.

use preflight_bundle::{Datatype, Value};

use super::column::TensorData;

/// N rows, one column per manifest input, in manifest order.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub rows: usize,
    pub columns: Vec<TensorData>,
}

/// The datatypes a column can hold; the others are refused at load time.
pub(crate) fn supported(datatype: Datatype) -> bool {
    matches!(
        datatype,
        Datatype::Fp32
            | Datatype::Fp64
            | Datatype::Int64
            | Datatype::Int32
            | Datatype::Bool
            | Datatype::Bytes
    )
}

impl Batch {
    /// The rows of `parts`, one after another; `None` where their columns
    /// differ, which batches decoded for one version never do.
    pub fn concat<'a>(mut parts: impl Iterator<Item = &'a Batch>) -> Option<Batch> {
        let mut together = parts.next()?.clone();
        for part in parts {
            if part.columns.len() != together.columns.len() {
                return None;
            }
            for (column, more) in together.columns.iter_mut().zip(&part.columns) {
                if !column.extend(more) {
                    return None;
                }
            }
            together.rows += part.rows;
        }
        Some(together)
    }

    /// Rows `rows`, copied.
    pub fn slice(&self, rows: std::ops::Range<usize>) -> Batch {
        Batch {
            rows: rows.len(),
            columns: self.columns.iter().map(|c| c.slice(rows.clone())).collect(),
        }
    }

    /// Row `i` as values in manifest order, for the fallback, into `row`
    /// (replacing what it held): one buffer serves every row of a batch.
    pub fn fill_row(&self, i: usize, row: &mut Vec<Value>) {
        row.clear();
        row.extend(self.columns.iter().map(|c| match c {
            TensorData::F32(v) if v[i].is_nan() => Value::Null,
            TensorData::F32(v) => Value::Float(f64::from(v[i])),
            TensorData::F64(v) if v[i].is_nan() => Value::Null,
            TensorData::F64(v) => Value::Float(v[i]),
            TensorData::I64(v) => Value::Int(v[i]),
            TensorData::I32(v) => Value::Int(i64::from(v[i])),
            TensorData::Bool(v) => Value::Bool(v[i]),
            TensorData::Text(v) => Value::Text(v[i].clone()),
        }));
    }
}
