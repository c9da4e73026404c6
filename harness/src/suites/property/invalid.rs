//! A client's mistake at one input gets a 4xx, never a 5xx.

use preflight_bundle::{Datatype, Manifest, Value};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::json;

use super::{CASES, Endpoint};
use crate::report::Check;

/// A client's mistake at one input gets a 4xx, never a 5xx.
pub(super) fn invalid_rows(endpoint: &Endpoint<'_>, row: BoxedStrategy<Vec<Value>>) -> Check {
    let manifest = endpoint.manifest.clone();
    let mistakes = prop::sample::select(Mistake::ALL.to_vec());
    let grpc = endpoint.client.grpc_addr().is_some();
    let invalid = (row, 0..manifest.inputs.len(), mistakes).prop_filter_map(
        "no invalid variant for this input",
        move |(row, index, mistake)| invalidate(&manifest, row, index, mistake, grpc),
    );
    endpoint.property(
        "invalid rows get a 4xx, never a 5xx",
        CASES,
        invalid,
        |cases| {
            let (body, what) = (&cases.0, &cases.1);
            let answer = endpoint
                .handle
                .block_on(endpoint.client.post_infer(endpoint.manifest, body, 1))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            if (400..500).contains(&answer.status) {
                Ok(())
            } else {
                Err(TestCaseError::fail(format!(
                    "{what}: answered {} instead of a 4xx",
                    answer.describe()
                )))
            }
        },
    )
}

/// A client's mistake at one input, which must get a 4xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mistake {
    /// A string where the input takes numbers.
    StringInNumber,
    /// A null where the input is not nullable.
    NullInNonNullable,
    /// The input left out of the request.
    Missing,
}

impl Mistake {
    const ALL: [Mistake; 3] = [
        Mistake::StringInNumber,
        Mistake::NullInNonNullable,
        Mistake::Missing,
    ];
}

/// A request made invalid at one input by `mistake`, and what it is;
/// `None` where the mistake cannot be made at that input, or by a client of
/// gRPC (`grpc`), which cannot send a string in a number, nor a missing
/// value (NaN) but in a float.
fn invalidate(
    manifest: &Manifest,
    row: Vec<Value>,
    index: usize,
    mistake: Mistake,
    grpc: bool,
) -> Option<(serde_json::Value, String)> {
    let feature = &manifest.inputs[index];
    let mut body = manifest.infer_request(&[row.as_slice()]);
    let what = match mistake {
        Mistake::StringInNumber if feature.datatype != Datatype::Bytes && !grpc => {
            body["inputs"][index]["data"] = json!(["12.5"]);
            format!("a string in '{}' ({})", feature.name, feature.datatype)
        }
        Mistake::NullInNonNullable
            if !feature.nullable && (!grpc || feature.datatype.is_float()) =>
        {
            body["inputs"][index]["data"] = json!([null]);
            format!("null in the non-nullable '{}'", feature.name)
        }
        Mistake::Missing => {
            body["inputs"].as_array_mut()?.remove(index);
            format!("'{}' left out", feature.name)
        }
        Mistake::StringInNumber | Mistake::NullInNonNullable => return None,
    };
    Some((body, what))
}
