//! The live-error check: feedback for the suite's own requests gives the
//! live error the harness computes from the same answers.

use preflight_bundle::{Metric, Record, Value};
use serde_json::json;

use super::{monitor, monitor_until};
use crate::client::{Unreachable, expected};
use crate::report::{Check, Skip};
use crate::suites::{CHUNK, ModelUnderTest, rows, scoring};

/// What the check is called.
const NAME: &str = "the live error is the metric over the feedback";

/// Sends hold-out rows under ids of its own, posts their targets back, and
/// compares the live error with the metric over the same answers.
pub(super) async fn live_error(model: &ModelUnderTest) -> Result<Check, Unreachable> {
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
    let answers = match answer_and_feed_back(model, &chosen).await? {
        Ok(answers) => answers,
        Err(why) => return Ok(Check::new(NAME, false, why)),
    };
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
    Ok(compare(metric, live, computed, ours))
}

/// The check: the live `metric` over `rows` of feedback against the one
/// computed from the same answers and targets.
fn compare(metric: Metric, live: f64, computed: f64, rows: usize) -> Check {
    let name = metric.as_str();
    // The answers are FP32 in JSON: the server keeps them as it sent them.
    let close = (live - computed).abs() <= 1e-6 + 1e-5 * computed.abs();
    let figures = format!(
        "live {name} {live:.6} over {rows} rows of feedback; the same answers and targets give \
         {computed:.6}"
    );
    if close {
        Check::new(NAME, true, figures)
    } else {
        Check::new(
            NAME,
            false,
            format!(
                "{figures}: the answers clients get are not the predictions the server monitors"
            ),
        )
    }
}

/// Sends `chosen` under ids of the suite's own, then posts their targets
/// back as feedback: the answers, or why not.
async fn answer_and_feed_back(
    model: &ModelUnderTest,
    chosen: &[&Record],
) -> Result<Result<scoring::Answers, String>, Unreachable> {
    let manifest = model.bundle.manifest();
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
            return Ok(Err(format!("a request failed: {}", answer.describe())));
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
    Ok(if status == 200 {
        Ok(answers)
    } else {
        Err(format!("POST {path} answered {status}: {text}"))
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
