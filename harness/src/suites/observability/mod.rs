//! `observability`: what the endpoint will show once the model serves
//! (docs/observability.md). Traffic drifted on one input must show as that
//! input's drift and no other's; feedback for its own requests must give the
//! live error the harness computes from the same answers; and `/metrics`
//! must carry what the alert rules and the dashboard of `deploy/` read.
//! Skipped, with why, on an endpoint without Preflight's monitoring
//! extension.

mod drift;
mod live_error;

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use self::drift::drift;
use self::live_error::live_error;
use super::descriptor::Descriptor;
use super::{ModelUnderTest, Suite, offers};
use crate::client::Unreachable;
use crate::report::{Check, SuiteReport};

/// What the rest of the harness knows of the suite (`Suite::descriptor`).
pub(super) const DESCRIPTOR: Descriptor = Descriptor::FUNCTIONAL;

/// The PSI above which the alert rules call an input drifted.
pub const PSI_THRESHOLD: f64 = 0.2;

/// How long the monitor, which runs beside the requests, may take to have
/// seen them.
const MONITOR_WAIT: Duration = Duration::from_secs(10);

/// The rules and dashboard whose metrics `/metrics` must carry.
const DEPLOY: [&str; 2] = [
    include_str!("../../../../deploy/prometheus/alerts.yml"),
    include_str!("../../../../deploy/grafana/preflight.json"),
];

pub(super) async fn run(model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    if let Some(skip) = offers(
        model,
        Suite::Observability,
        "preflight_monitor",
        "monitoring",
    )
    .await?
    {
        return Ok(skip);
    }
    let checks = vec![
        drift(model).await?,
        live_error(model).await?,
        metrics(model).await?,
    ];
    Ok(SuiteReport::new(Suite::Observability.name(), checks))
}

fn monitor_path(model: &ModelUnderTest) -> String {
    let m = &model.bundle.manifest().model;
    format!("/v2/models/{}/versions/{}/monitor", m.name, m.version)
}

async fn monitor(model: &ModelUnderTest) -> Result<Result<Json, String>, Unreachable> {
    let (status, text) = model.client.get_text(&monitor_path(model)).await?;
    Ok(match (status, serde_json::from_str::<Json>(&text)) {
        (200, Ok(report)) => Ok(report),
        (status, _) => Err(format!(
            "GET {} answered {status}: {text}",
            monitor_path(model)
        )),
    })
}

/// The monitor once `ready` says it has caught up, or why not.
async fn monitor_until(
    model: &ModelUnderTest,
    ready: impl Fn(&Json) -> bool,
) -> Result<Result<Json, String>, Unreachable> {
    let deadline = Instant::now() + MONITOR_WAIT;
    loop {
        let report = match monitor(model).await? {
            Ok(report) => report,
            Err(why) => return Ok(Err(why)),
        };
        if ready(&report) {
            return Ok(Ok(report));
        }
        if Instant::now() > deadline {
            return Ok(Err(format!(
                "the monitor had not caught up within {} s: {report}",
                MONITOR_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every metric the alert rules and the dashboard read, by family name.
pub fn deploy_metrics() -> Vec<String> {
    let mut names: Vec<String> = DEPLOY
        .iter()
        .flat_map(|text| text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| w.starts_with("preflight_") || w.starts_with("process_"))
        .filter(|w| !w.ends_with('_'))
        .map(|w| family(w).to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The family a sample name belongs to, as `# TYPE` names it.
fn family(name: &str) -> &str {
    ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// `/metrics` carries every family deploy/ reads, and this version's drift.
async fn metrics(model: &ModelUnderTest) -> Result<Check, Unreachable> {
    const NAME: &str = "the metrics the alerts and dashboard read";
    let (status, text) = model.client.get_text("/metrics").await?;
    if status != 200 {
        return Ok(Check::new(
            NAME,
            false,
            format!("GET /metrics answered {status}"),
        ));
    }
    let written: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let needed = deploy_metrics();
    let missing: Vec<&String> = needed
        .iter()
        .filter(|n| !written.contains(&n.as_str()))
        .collect();
    let m = &model.bundle.manifest().model;
    let series = format!(
        "preflight_monitor_rows{{model=\"{}\",version=\"{}\"}}",
        m.name, m.version
    );
    Ok(if !missing.is_empty() {
        let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        Check::new(
            NAME,
            false,
            format!("/metrics lacks {} of deploy/", missing.join(", ")),
        )
    } else if !text.lines().any(|l| l.starts_with(&series)) {
        Check::new(NAME, false, format!("/metrics has no {series}"))
    } else {
        Check::new(
            NAME,
            true,
            format!("all {} families deploy/ reads, and {series}", needed.len()),
        )
    })
}
