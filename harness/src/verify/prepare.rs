//! What each model's suites read, gathered before they run: the bundle's
//! samples and hold-out, the artifact's own outputs, the last release and
//! the endpoint.

use preflight_bundle::{Bundle, Record};

use super::VerifyError;
use super::phases::stopped;
use super::select::Selected;
use crate::suites::{self, BaselineReport, ModelUnderTest, Probes};
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
    let artifact = run_artifact(&bundle, samples.as_deref(), needs_artifact).await;
    let probes = match bundle.probes().map_err(usage)? {
        Some(rows) => Ok(Probes {
            artifact: run_artifact(&bundle, Some(&rows), needs_artifact).await,
            rows,
            derived: false,
        }),
        None if needs_artifact => derived_probes(&bundle, samples.as_deref()).await,
        None => Err("the bundle has no probes.jsonl".to_owned()),
    };
    Ok(ModelUnderTest {
        bundle,
        previous,
        last_release,
        samples,
        probes,
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

/// Rows either side of the splits of the bundle's own graph, with the
/// artifact's outputs as their expected ones (`crate::splits`), made off the
/// runtime's threads; why none, saying the bundle has no probes.jsonl.
async fn derived_probes(bundle: &Bundle, samples: Option<&[Record]>) -> Result<Probes, String> {
    let (bundle, samples) = (bundle.clone(), samples.unwrap_or_default().to_vec());
    let derived = tokio::task::spawn_blocking(move || {
        let rows = crate::splits::derive(&bundle, &samples)?;
        let outputs = crate::artifact::predict(&bundle, &rows)
            .map_err(|why| format!("the artifact cannot run them: {why}"))?;
        let manifest = bundle.manifest();
        let rows = rows
            .into_iter()
            .enumerate()
            .map(|(i, row)| {
                let expected = crate::slots::outputs(manifest, &crate::slots::row(&outputs, i));
                row.with_outputs(expected)
            })
            .collect();
        Ok(Probes {
            rows,
            artifact: Some(Ok(outputs)),
            derived: true,
        })
    });
    derived
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
        .map_err(|why: String| {
            format!("the bundle has no probes.jsonl, and none could be derived: {why}")
        })
}
