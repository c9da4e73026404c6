//! What each model's suites read, gathered before they run: the bundle's
//! samples and hold-out, the artifact's own outputs, the last release and
//! the endpoint.

use preflight_bundle::{Bundle, Record};

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
    let probes = bundle.probes().map_err(usage)?;
    let holdout = bundle.holdout().map_err(usage)?;
    let artifact = run_artifact(&bundle, samples.as_deref(), needs_artifact).await;
    let probes_artifact = run_artifact(&bundle, probes.as_deref(), needs_artifact).await;
    Ok(ModelUnderTest {
        bundle,
        previous,
        last_release,
        samples,
        probes,
        holdout,
        artifact,
        probes_artifact,
        baseline,
        client: endpoint.client,
        memory: endpoint.memory,
        memory_after_load: endpoint.memory_after_load,
        image_bytes: endpoint.image_bytes,
        owns_endpoint: endpoint.owned,
    })
}

/// The artifact's own outputs for `records`, run in-process, where the
/// suites need them and there are rows.
async fn run_artifact(
    bundle: &Bundle,
    records: Option<&[Record]>,
    needed: bool,
) -> Option<Result<Vec<Vec<f64>>, String>> {
    let records = records.filter(|_| needed)?.to_vec();
    let bundle = bundle.clone();
    Some(
        tokio::task::spawn_blocking(move || crate::artifact::predict(&bundle, &records))
            .await
            .unwrap_or_else(|e| Err(e.to_string())),
    )
}
