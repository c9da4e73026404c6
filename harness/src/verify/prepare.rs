//! What each model's suites read, gathered before they run: the bundle's
//! samples and hold-out, the artifact's own outputs, the last release and
//! the endpoint.

use preflight_bundle::Bundle;

use super::VerifyError;
use super::phases::stopped;
use super::select::Selected;
use crate::suites::{self, BaselineReport, ModelUnderTest};
use crate::target::Endpoint;

/// What every model's suites need of the endpoint.
#[derive(Clone)]
pub(super) struct EndpointFacts {
    client: crate::client::Client,
    memory: Option<suites::MemoryProbe>,
    memory_after_load: Option<u64>,
    image_bytes: Option<u64>,
    owned: bool,
}

impl EndpointFacts {
    pub(super) fn of(endpoint: &Endpoint) -> Self {
        Self {
            owned: endpoint.owned(),
            client: endpoint.client.clone(),
            memory: endpoint.memory.clone(),
            memory_after_load: endpoint.memory_after_load,
            image_bytes: endpoint.image_bytes,
        }
    }
}

/// Reads what the suites need; a file that breaks the format is a usage error.
pub(super) async fn prepare(
    selected: Selected,
    last_release: Result<Bundle, String>,
    baseline: BaselineReport,
    endpoint: EndpointFacts,
    needs_artifact: bool,
) -> Result<ModelUnderTest, VerifyError> {
    let Selected { bundle, previous } = selected;
    endpoint
        .client
        .learn_versions(bundle.name())
        .await
        .map_err(stopped)?;
    let usage = |e: preflight_bundle::Error| VerifyError::Usage(e.to_string());
    let samples = bundle.samples().map_err(usage)?;
    let holdout = bundle.holdout().map_err(usage)?;
    let artifact = match (&samples, needs_artifact) {
        (Some(records), true) => {
            let (bundle, records) = (bundle.clone(), records.clone());
            Some(
                tokio::task::spawn_blocking(move || crate::artifact::predict(&bundle, &records))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string())),
            )
        }
        _ => None,
    };
    Ok(ModelUnderTest {
        bundle,
        previous,
        last_release,
        samples,
        holdout,
        artifact,
        baseline,
        client: endpoint.client,
        memory: endpoint.memory,
        memory_after_load: endpoint.memory_after_load,
        image_bytes: endpoint.image_bytes,
        owns_endpoint: endpoint.owned,
    })
}
