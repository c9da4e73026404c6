//! `observability`: what the endpoint will show once the model serves
//! (docs/observability.md). Traffic drifted on one input must show as that
//! input's drift and no other's; feedback for its own requests must give the
//! live error the harness computes from the same answers; and `/metrics`
//! must carry what the alert rules and the dashboard of `deploy/` read.
//! Skipped, with why, on an endpoint without Preflight's monitoring
//! extension.

use std::time::{Duration, Instant};

use preflight_bundle::{Datatype, Metric, Record, Stats, Value};
use serde_json::{Value as Json, json};

use super::descriptor::Descriptor;
use super::{CHUNK, ModelUnderTest, Suite, offers, rows, scoring};
use crate::client::{Unreachable, expected};
use crate::report::{Check, Skip, SuiteReport};

/// What the rest of the harness knows of the suite (`Suite::descriptor`).
pub(super) const DESCRIPTOR: Descriptor = Descriptor::FUNCTIONAL;

/// The PSI above which the alert rules call an input drifted.
pub const PSI_THRESHOLD: f64 = 0.2;

/// How long the monitor, which runs beside the requests, may take to have
/// seen them.
const MONITOR_WAIT: Duration = Duration::from_secs(10);

/// The rules and dashboard whose metrics `/metrics` must carry.
const DEPLOY: [&str; 2] = [
    include_str!("../../../deploy/prometheus/alerts.yml"),
    include_str!("../../../deploy/grafana/preflight.json"),
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

/// The numeric input to drift, and a value inside the last bin of its
/// training data: the first numeric input with bins in reference.json.
fn drift_target(model: &ModelUnderTest) -> Result<(usize, f64), String> {
    let reference = model
        .bundle
        .reference()
        .map_err(|e| e.to_string())?
        .ok_or("needs reference.json")?;
    let manifest = model.bundle.manifest();
    manifest
        .inputs
        .iter()
        .enumerate()
        .find_map(|(i, f)| match reference.inputs.get(&f.name) {
            Some(Stats::Numeric(n)) => {
                let edges = &n.bins.as_ref()?.edges;
                let (lo, hi) = (edges[edges.len().checked_sub(2)?], *edges.last()?);
                let mid = (lo + hi) / 2.0;
                let integral = matches!(f.datatype, Datatype::Int32 | Datatype::Int64);
                Some((i, if integral { mid.round() } else { mid }))
            }
            _ => None,
        })
        .ok_or_else(|| "needs a numeric input with bins in reference.json".to_owned())
}

/// Samples below this many are too few for their own PSI against the
/// training data to mean anything: with ten bins, sampling alone gives
/// about 9 / n.
const SAMPLES_FOR_A_BASELINE: usize = 200;

/// Sends a window of the bundle's samples as they are, then the same rows
/// with one input set inside its training data's last bin. That input must
/// drift, and every other input's PSI must stay what it was: their values
/// are the same rows'. With enough samples, no input may drift on the
/// samples as they are.
async fn drift(model: &ModelUnderTest) -> Result<Check, Unreachable> {
    const NAME: &str = "drift shows on the drifted input only";
    let manifest = model.bundle.manifest();
    let Some(samples) = model.samples.as_ref().filter(|s| !s.is_empty()) else {
        return Ok(Check::skipped(NAME, Skip::Missing, "needs samples.jsonl"));
    };
    let (input, value) = match drift_target(model) {
        Ok(target) => target,
        Err(why) => return Ok(Check::skipped(NAME, Skip::Missing, why)),
    };
    let name = &manifest.inputs[input].name;
    let before = match monitor(model).await? {
        Ok(report) => report,
        Err(why) => return Ok(Check::new(NAME, false, why)),
    };
    let window = before["window"].as_u64().unwrap_or(0) as usize;
    let mut seen = before["rows_seen"].as_u64().unwrap_or(0);
    let plain_rows: Vec<Record> = samples.iter().cycle().take(window).cloned().collect();
    let drifted: Vec<Record> = plain_rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.inputs[input] = match r.inputs[input] {
                Value::Int(_) => Value::Int(value as i64),
                _ => Value::Float(value),
            };
            r
        })
        .collect();
    let mut psi = Vec::new();
    for window_rows in [&plain_rows, &drifted] {
        for chunk in window_rows.chunks(CHUNK) {
            let records: Vec<&Record> = chunk.iter().collect();
            let answer = model.client.infer(manifest, &rows(&records), None).await?;
            if !answer.ok() {
                return Ok(Check::new(
                    NAME,
                    false,
                    format!("a request failed: {}", answer.describe()),
                ));
            }
        }
        seen += window as u64;
        let report = match monitor_until(model, |r| r["rows_seen"].as_u64() >= Some(seen)).await? {
            Ok(report) => report,
            Err(why) => return Ok(Check::new(NAME, false, why)),
        };
        // No PSI (no reference bins, no row) is no drift.
        let by_input: Vec<(String, f64)> = manifest
            .inputs
            .iter()
            .map(|f| {
                let p = report["inputs"][&f.name]["psi"].as_f64().unwrap_or(0.0);
                (f.name.clone(), p)
            })
            .collect();
        psi.push(by_input);
    }
    let (plain, after) = (&psi[0], &psi[1]);
    let before_drift = plain[input].1;
    let drifted_psi = after[input].1;
    if samples.len() >= SAMPLES_FOR_A_BASELINE
        && let Some((other, p)) = plain.iter().find(|(_, p)| *p > PSI_THRESHOLD)
    {
        return Ok(Check::new(
            NAME,
            false,
            format!(
                "on the bundle's own samples, as they are, '{other}' shows PSI {p:.3}, above \
                 {PSI_THRESHOLD}: the endpoint sees them otherwise than the training data"
            ),
        ));
    }
    let setting = format!(
        "'{name}' set to {value} (its training data's last bin) in {window} rows: PSI \
         {drifted_psi:.3}, against {before_drift:.3} on the same rows as they are"
    );
    if drifted_psi <= PSI_THRESHOLD.max(before_drift) {
        return Ok(Check::new(
            NAME,
            false,
            format!("{setting}: the monitor misses the drift"),
        ));
    }
    let moved = plain
        .iter()
        .zip(after)
        .enumerate()
        .filter(|(i, _)| *i != input)
        .find(|(_, ((_, p0), (_, p1)))| (p1 - p0).abs() > 1e-9);
    Ok(match moved {
        Some((_, ((other, p0), (_, p1)))) => Check::new(
            NAME,
            false,
            format!(
                "{setting}; but '{other}' moved from PSI {p0:.3} to {p1:.3}, although only \
                 '{name}' drifted"
            ),
        ),
        None => {
            let highest = plain
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != input)
                .map(|(_, (n, p))| (n, *p))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map_or("none".to_owned(), |(n, p)| format!("'{n}' {p:.3}"));
            Check::new(
                NAME,
                true,
                format!("{setting}; no other input's PSI moved (the highest, {highest})"),
            )
        }
    })
}

/// Sends hold-out rows under ids of its own, posts their targets back, and
/// compares the live error with the metric over the same answers.
async fn live_error(model: &ModelUnderTest) -> Result<Check, Unreachable> {
    const NAME: &str = "the live error is the metric over the feedback";
    let manifest = model.bundle.manifest();
    let metric = manifest.contract.primary_quality().map(|q| q.metric);
    let (Some(holdout), Some(metric)) = (model.holdout.as_ref().filter(|h| !h.is_empty()), metric)
    else {
        return Ok(Check::skipped(
            NAME,
            Skip::Missing,
            "needs holdout.jsonl and contract.quality",
        ));
    };
    if matches!(metric, Metric::RocAuc) {
        return Ok(Check::skipped(
            NAME,
            Skip::NotApplicable,
            "roc_auc ranks rows, so the server does not compute it live row by row",
        ));
    }
    let before = match monitor(model).await? {
        Ok(report) => report,
        Err(why) => return Ok(Check::new(NAME, false, why)),
    };
    let window = before["window"].as_u64().unwrap_or(0) as usize;
    // Earlier feedback in the window would mix with ours: then fill it.
    let earlier = before["live_error"]["count"].as_u64().unwrap_or(0);
    let n = if earlier == 0 {
        holdout.len().min(200)
    } else {
        window
    };
    let chosen: Vec<&Record> = holdout.iter().cycle().take(n).collect();
    let mut feedback = Vec::new();
    let mut answers = scoring::Answers::default();
    let tag = format!(
        "preflight-{}-{}-{}",
        manifest.model.name,
        manifest.model.version,
        std::process::id()
    );
    for (i, chunk) in chosen.chunks(CHUNK).enumerate() {
        let id = format!("{tag}-{i}");
        let mut body = manifest.infer_request(&rows(chunk));
        body["id"] = json!(id);
        let answer = model
            .client
            .post_infer(manifest, &body, chunk.len())
            .await?;
        if !answer.ok() {
            return Ok(Check::new(
                NAME,
                false,
                format!("a request failed: {}", answer.describe()),
            ));
        }
        let records: Vec<Record> = chunk.iter().map(|r| (*r).clone()).collect();
        answers.extend(manifest, &answer.outputs, &records);
        let targets: Vec<serde_json::Value> = chunk.iter().map(|r| target(manifest, r)).collect();
        feedback.push(json!({"id": id, "target": targets}));
    }
    let path = format!("/v2/models/{}/feedback", manifest.model.name);
    let (status, text) = model
        .client
        .post_json(&path, &json!({ "feedback": feedback }))
        .await?;
    if status != 200 {
        return Ok(Check::new(
            NAME,
            false,
            format!("POST {path} answered {status}: {text}"),
        ));
    }
    let ours = answers.served.len().min(window);
    let report = match monitor_until(model, |r| {
        r["live_error"]["count"].as_u64() >= Some(ours as u64)
    })
    .await?
    {
        Ok(report) => report,
        Err(why) => return Ok(Check::new(NAME, false, why)),
    };
    let live = report["live_error"]["value"].as_f64().unwrap_or(f64::NAN);
    let computed = scoring::score(manifest, metric, &answers.last(ours)).unwrap_or(f64::NAN);
    let name = metric.as_str();
    // The answers are FP32 in JSON: the server keeps them as it sent them.
    let close = (live - computed).abs() <= 1e-6 + 1e-5 * computed.abs();
    let figures = format!(
        "live {name} {live:.6} over {ours} rows of feedback; the same answers and targets give \
         {computed:.6}"
    );
    Ok(if close {
        Check::new(NAME, true, figures)
    } else {
        Check::new(
            NAME,
            false,
            format!(
                "{figures}: the answers clients get are not the predictions the server monitors"
            ),
        )
    })
}

/// A record's target as feedback sends it: a number, or a classifier's
/// label as its label output carries it.
fn target(manifest: &preflight_bundle::Manifest, record: &Record) -> serde_json::Value {
    let index = manifest.classifier().map_or(0, |c| c.label);
    record
        .target
        .as_ref()
        .and_then(|t| t.get(index))
        .filter(|v| !v.is_null())
        .map_or_else(|| json!(expected(manifest, record, 0)), Value::to_json)
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
