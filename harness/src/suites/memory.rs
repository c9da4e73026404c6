//! What one model costs the endpoint in memory: the server's heap in use
//! (`preflight_process_heap_bytes`, the C allocator's figure, ONNX Runtime's
//! sessions and arenas included) after the model is unloaded, and again
//! after it is loaded and has served its samples one batch at a time and one
//! large batch. Only on an endpoint this run started: preflight does not
//! unload models on a server it does not own.

use preflight_bundle::Record;

use super::{CHUNK, ModelUnderTest, rows};
use crate::client::Unreachable;
use crate::report::Skip;

/// The server's gauge of the heap in use.
const METRIC: &str = "preflight_process_heap_bytes";
/// Rows of the large batch served before the second reading.
const LARGE_BATCH: usize = 1000;

/// Why the memory of a model has no figure.
pub(super) enum Unmeasured {
    /// The endpoint cannot tell, or may not be asked.
    Skipped(Skip, String),
    /// The endpoint refused to unload, load or serve the model.
    Failed(String),
}

/// The bytes the model costs, with every version the endpoint loads of it.
pub(super) async fn measure(
    model: &ModelUnderTest,
) -> Result<Result<u64, Unmeasured>, Unreachable> {
    if !model.owns_endpoint {
        return Ok(Err(Unmeasured::Skipped(
            Skip::Endpoint,
            "the endpoint was not started by this run, and preflight does not unload models on \
            a server it does not own"
                .to_owned(),
        )));
    }
    if heap(model).await?.is_none() {
        return Ok(Err(Unmeasured::Skipped(
            Skip::Endpoint,
            format!("the endpoint's /metrics has no {METRIC}"),
        )));
    }
    if let Err(why) = repository(model, "unload").await? {
        return Ok(Err(Unmeasured::Failed(why)));
    }
    let empty = heap(model).await?;
    if let Err(why) = repository(model, "load").await? {
        return Ok(Err(Unmeasured::Failed(why)));
    }
    if let Err(why) = serve(model).await? {
        return Ok(Err(Unmeasured::Failed(why)));
    }
    let loaded = heap(model).await?;
    Ok(match (empty, loaded) {
        (Some(empty), Some(loaded)) => Ok(loaded.saturating_sub(empty)),
        _ => Err(Unmeasured::Failed(format!(
            "/metrics stopped giving {METRIC}"
        ))),
    })
}

/// `POST /v2/repository/models/{model}/{action}`, or what it answered
/// instead of 200.
async fn repository(
    model: &ModelUnderTest,
    action: &str,
) -> Result<Result<(), String>, Unreachable> {
    let path = format!("/v2/repository/models/{}/{action}", model.bundle.name());
    let (status, body) = model.client.post_empty(&path).await?;
    Ok(if status == 200 {
        Ok(())
    } else {
        Err(format!("{action} answered {status}: {body}"))
    })
}

/// Every sample, `CHUNK` rows at a time, then one large batch.
async fn serve(model: &ModelUnderTest) -> Result<Result<(), String>, Unreachable> {
    let manifest = model.bundle.manifest();
    let Some(samples) = model.samples.as_ref().filter(|s| !s.is_empty()) else {
        return Ok(Ok(()));
    };
    let all: Vec<&Record> = samples.iter().collect();
    let large: Vec<&Record> = samples.iter().cycle().take(LARGE_BATCH).collect();
    for batch in all.chunks(CHUNK).chain([large.as_slice()]) {
        let answer = model.client.infer(manifest, &rows(batch), None).await?;
        if !answer.ok() {
            let what = format!("a batch of {} samples", batch.len());
            return Ok(Err(format!("{what} answered {}", answer.describe())));
        }
    }
    Ok(Ok(()))
}

/// The gauge's value, where `/metrics` gives it.
async fn heap(model: &ModelUnderTest) -> Result<Option<u64>, Unreachable> {
    let (status, text) = model.client.get_text("/metrics").await?;
    if status != 200 {
        return Ok(None);
    }
    Ok(text.lines().find_map(|line| {
        let rest = line.strip_prefix(METRIC)?;
        let value = rest.trim_start_matches("{}").trim();
        value.parse::<f64>().ok().map(|v| v as u64)
    }))
}
