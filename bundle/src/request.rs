//! How a bundle's rows travel on the wire: the Open Inference Protocol
//! request that the harness sends, and that tests and benchmarks build.

use serde_json::{Value as Json, json};

use crate::{Manifest, Record, Value};

impl Manifest {
    /// The request body for `rows` of values in this manifest's input order:
    /// one `[rows, 1]` tensor per input, named and typed as declared
    /// (PROTOCOL.md: tabular requests are columnar). Add `parameters` to it
    /// as needed.
    pub fn infer_request<R: AsRef<[Value]>>(&self, rows: &[R]) -> Json {
        let inputs: Vec<Json> = self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                let data: Vec<Json> = rows.iter().map(|row| row.as_ref()[i].to_json()).collect();
                json!({
                    "name": input.name,
                    "datatype": input.datatype.as_str(),
                    "shape": [rows.len(), 1],
                    "data": data,
                })
            })
            .collect();
        json!({ "inputs": inputs })
    }
}

/// A record's row, for [`Manifest::infer_request`].
impl AsRef<[Value]> for Record {
    fn as_ref(&self) -> &[Value] {
        &self.inputs
    }
}
