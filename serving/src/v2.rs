//! The Open Inference Protocol's v2 inference, whatever carries it (REST or
//! gRPC): the outputs asked for, the batch, and the answer's tensors.

use crate::decode::{Limits, decode_tensors};
use crate::error::{ApiError, AppResult};
use crate::infer::Prediction;
use crate::model::{Batch, Subject};
use crate::protocol::{InferRequest, InferResponse, ResponseOutput};
use crate::request::fallback_parameters;
use crate::served::Served;

/// The batch of a request, and the indices of the outputs it asks for, in
/// the order asked (all of them, in manifest order, when it names none).
pub(crate) fn decode(
    served: &Served,
    request: &InferRequest,
    limits: Limits,
) -> AppResult<(Batch, Vec<usize>)> {
    let names = request
        .outputs
        .as_ref()
        .map(|o| o.iter().map(|o| o.name.as_str()).collect());
    let selected = select_outputs(served, names)?;
    Ok((decode_tensors(&served.manifest, request, limits)?, selected))
}

/// The answer: the `selected` outputs of `prediction`, `rows` rows each.
pub(crate) fn answer(
    model: &str,
    served: &Served,
    id: Option<String>,
    selected: Vec<usize>,
    prediction: Prediction,
    rows: usize,
) -> AppResult<InferResponse> {
    let Prediction {
        outputs: mut values,
        fallback,
    } = prediction;
    let mut outputs = Vec::with_capacity(selected.len());
    for index in selected {
        let feature = &served.manifest.outputs[index];
        let Some(data) = values[index].take() else {
            return Err(ApiError::Unavailable(format!(
                "{}: the fallback answered and has no value for output '{}'",
                Subject::of(&served.manifest),
                feature.name
            )));
        };
        outputs.push(ResponseOutput {
            name: feature.name.clone(),
            shape: vec![rows, data.len() / rows.max(1)],
            datatype: feature.datatype.as_str(),
            data,
        });
    }
    Ok(InferResponse {
        model_name: model.to_owned(),
        model_version: served.manifest.model.version.to_string(),
        id,
        parameters: fallback_parameters(fallback),
        outputs,
    })
}

/// Indices of the requested outputs, all of them when none are named.
fn select_outputs(served: &Served, names: Option<Vec<&str>>) -> AppResult<Vec<usize>> {
    let Some(names) = names else {
        return Ok((0..served.manifest.outputs.len()).collect());
    };
    names
        .into_iter()
        .map(|name| {
            served.manifest.output(name).map(|(i, _)| i).ok_or_else(|| {
                let known: Vec<&str> = served
                    .manifest
                    .outputs
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect();
                ApiError::BadRequest(format!(
                    "{}: output '{name}' is not an output of the model (outputs: {})",
                    Subject::of(&served.manifest),
                    known.join(", ")
                ))
            })
        })
        .collect()
}
