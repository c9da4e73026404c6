//! The `container=IMAGE` target: the serving image run by the local Docker
//! engine, its memory read from the engine.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Endpoint, Protocol, READY_TIMEOUT, TargetOptions, fresh_token, loaded};
use crate::client::Client;
use crate::suites::MemoryProbe;

/// How long a container's memory reading is reused.
const MEMORY_READING_REUSE: Duration = Duration::from_secs(5);

/// A memory reading of the container: when, and the bytes (`None` when the
/// engine could not tell).
type Reading = (Instant, Option<u64>);

/// The serving image in a container, ready; its log goes to `out/container.log` at the end.
pub(super) async fn start_container(
    image: &str,
    models: &Path,
    out: &Path,
    options: &TargetOptions,
) -> Result<Endpoint, String> {
    let log = out.join("container.log");
    let token = fresh_token();
    let container = crate::container::start(image, models, options.limits, &log, &token).await?;
    let mut client = Client::new(&container.url).with_repository_token(&token);
    if options.protocol == Protocol::Grpc {
        client = client
            .with_grpc(&container.grpc)
            .map_err(|e| e.to_string())?;
    }
    let ready = crate::container::wait(&container, READY_TIMEOUT, || async {
        loaded(&client).await.is_ok()
    })
    .await;
    if let Err(e) = ready {
        let _ = container.save_log(&log).await;
        container.remove().await;
        return Err(format!("{image}: {e}; its log: {}", log.display()));
    }
    let id = container.id().to_owned();
    let memory_after_load = crate::container::memory_of(&id).await;
    // The size suite reads memory from synchronous code on the multi-thread runtime.
    // The engine's stats take about a second to sample, and the size suite
    // asks once per model: a reading is reused for a few seconds, so that a
    // fleet's size suites do not take a second each.
    let last: Arc<std::sync::Mutex<Option<Reading>>> = Arc::default();
    let memory: MemoryProbe = Arc::new(move || {
        let mut last = last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, bytes)) = *last
            && at.elapsed() < MEMORY_READING_REUSE
        {
            return bytes;
        }
        let handle = tokio::runtime::Handle::current();
        let bytes =
            tokio::task::block_in_place(|| handle.block_on(crate::container::memory_of(&id)));
        *last = Some((Instant::now(), bytes));
        bytes
    });
    let mut endpoint = Endpoint::bare(client);
    endpoint.image_bytes = container.image_bytes;
    endpoint.memory = Some(memory);
    endpoint.memory_after_load = memory_after_load;
    endpoint.log = Some(log);
    endpoint.container = Some(container);
    Ok(endpoint)
}
