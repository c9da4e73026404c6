//! `rollout`: the rollout machinery of the endpoint, proved before a
//! release needs it. Under steady traffic at the contract's rate to the
//! model's default route, the suite pins the last release, puts the
//! candidate in shadow, then in canary, pins it, and rolls back; it counts
//! failed requests (there must be none), times each switch from the call to
//! the first answer of the new version, and checks that the shadow computes
//! the candidate: the divergence the endpoint reports must be the one the
//! candidate's training-time outputs give against the answers served.
//! Afterwards the model is loaded as it was. Run when the repository holds
//! the version below the candidate, on an endpoint whose repository API the
//! harness may call (one this run started, or a `url=` target given
//! `--repository-token`), with Preflight's rollout extension.

mod shadow;
mod traffic;

use std::time::{Duration, Instant};

use preflight_bundle::{Record, Tolerance};
use serde_json::{Value as Json, json};

use self::traffic::{Sent, Traffic};
use super::Phase;
use super::descriptor::Descriptor;
use super::{ModelUnderTest, Suite, offers, skipped};
use crate::client::{Answer, Unreachable};
use crate::report::{Check, Skip, SuiteReport};

/// What the rest of the harness knows of the suite (`Suite::descriptor`).
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    // Mostly waiting on steady traffic: many models at once.
    phase: Phase::Rollout,
    ..Descriptor::FUNCTIONAL
};

/// Requests the canary is judged on: the endpoint splits each run of 100
/// default requests, so any 100 in a row hold the canary's exact share.
const CANARY_REQUESTS: usize = 100;
/// Requests the shadow is judged on: its divergent share is compared with
/// the one the same requests give, so only the rows in flight at the
/// switch blur it, one or two of 50.
const SHADOW_REQUESTS: usize = 50;
/// Requests answered after a switch before the next step: the new route
/// serves steadily, not only its first answer.
const SETTLE_REQUESTS: usize = 10;
/// The canary's share, in percent.
const CANARY_PERCENT: u64 = 50;
/// How far the share of the canary's answers, and the shadow's divergent
/// share, may be from what is expected.
const SHARE_MARGIN: f64 = 0.15;
/// What a failed shadow check concludes.
const DOES_NOT: &str = "the shadow does not compute the candidate";
/// How long a switch may take before the suite stops waiting for it.
const SWITCH_LIMIT: Duration = Duration::from_secs(10);

/// Requests per second of steady traffic all rollouts of a run send
/// together at most: a third of what this project's 2-core machine serves,
/// so that the traffic never queues behind itself.
pub(crate) const TRAFFIC_BUDGET_PER_S: u32 = 1000;

/// The steady traffic's rate for `manifest`'s model: its contract's rate,
/// within 20 to 200 requests per second.
pub(crate) fn rate(manifest: &preflight_bundle::Manifest) -> f64 {
    manifest
        .contract
        .latency
        .as_ref()
        .map_or(100.0, |l| l.rate_per_s)
        .clamp(20.0, 200.0)
}

pub(super) async fn run(model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    let (previous, samples) = match cannot_run(model).await? {
        Ok(ready) => ready,
        Err(skip) => return Ok(skip),
    };
    let manifest = model.bundle.manifest();
    let rate = rate(manifest);
    let rollout = Rollout {
        model,
        candidate: manifest.model.version,
        last: previous,
        tolerance: manifest.contract.parity.unwrap_or(Tolerance::new(0.0, 0.0)),
        samples,
    };
    let traffic = Traffic::start(model, samples, rate)?;
    let mut checks = Vec::new();
    let mut metrics = std::collections::BTreeMap::new();
    let outcome = rollout.steps(&traffic, &mut checks, &mut metrics).await;
    // Whatever happened, the model is loaded as it was: every version, the
    // highest answering.
    let restored = rollout.call("load", json!({})).await;
    let sent = traffic.finish().await;
    outcome?;
    if let Err(why) = restored? {
        checks.push(Check::new("loaded as before", false, why));
    }
    checks.push(none_lost(&sent, rate, &mut metrics));
    let mut report = SuiteReport::new(Suite::Rollout.name(), checks);
    report.metrics = metrics;
    Ok(report)
}

/// The last release's version and the samples, when the suite can run on
/// this model and endpoint; otherwise the report of its skip.
async fn cannot_run(
    model: &ModelUnderTest,
) -> Result<Result<(u64, &[Record]), SuiteReport>, Unreachable> {
    let manifest = model.bundle.manifest();
    let Some(previous) = &model.previous else {
        return Ok(Err(skipped(
            Suite::Rollout,
            Skip::NotApplicable,
            format!(
                "the repository holds no version of '{}' below {} to roll back to",
                manifest.model.name, manifest.model.version
            ),
        )));
    };
    let Some(samples) = model.samples.as_ref().filter(|s| !s.is_empty()) else {
        return Ok(Err(skipped(
            Suite::Rollout,
            Skip::Missing,
            "needs samples.jsonl",
        )));
    };
    if !model.client.has_repository_token() {
        return Ok(Err(skipped(
            Suite::Rollout,
            Skip::Endpoint,
            "the suite changes what the endpoint serves through its repository API: it runs on \
             an endpoint this run started, or a url= target given --repository-token",
        )));
    }
    if let Some(skip) = offers(model, Suite::Rollout, "preflight_rollout", "rollout").await? {
        return Ok(Err(skip));
    }
    Ok(Ok((previous.version(), samples)))
}

/// "no request failed or was lost": every request of the steady traffic
/// answered.
fn none_lost(
    sent: &[Sent],
    rate: f64,
    metrics: &mut std::collections::BTreeMap<String, f64>,
) -> Check {
    let failed: Vec<&Sent> = sent
        .iter()
        .filter(|s| !s.answer.as_ref().is_ok_and(Answer::ok))
        .collect();
    metrics.insert("requests".to_owned(), sent.len() as f64);
    metrics.insert("failed".to_owned(), failed.len() as f64);
    Check::new(
        "no request failed or was lost",
        failed.is_empty(),
        match failed.first() {
            None => format!(
                "{} requests at {rate}/s through shadow, canary, pin and rollback: all answered",
                sent.len()
            ),
            Some(first) => format!(
                "{} of {} requests failed, first: {}",
                failed.len(),
                sent.len(),
                match &first.answer {
                    Ok(answer) => answer.describe(),
                    Err(why) => why.clone(),
                }
            ),
        },
    )
}

struct Rollout<'a> {
    model: &'a ModelUnderTest,
    candidate: u64,
    last: u64,
    tolerance: Tolerance,
    samples: &'a [Record],
}

impl Rollout<'_> {
    /// A repository API call for the model, `load` or `route`: the
    /// answer's body.
    async fn call(&self, what: &str, body: Json) -> Result<Result<String, String>, Unreachable> {
        let name = &self.model.bundle.manifest().model.name;
        let path = format!("/v2/repository/models/{name}/{what}");
        let (status, text) = self.model.client.post_repository(&path, &body).await?;
        Ok(if status == 200 {
            Ok(text)
        } else {
            Err(format!("POST {path} {body} answered {status}: {text}"))
        })
    }

    fn pin(version: u64) -> Json {
        json!({"parameters": {"version": version.to_string()}})
    }

    /// Calls `what` and waits for the first answer of `version` sent after
    /// the call began; the time from the call to that answer.
    async fn switch(
        &self,
        traffic: &Traffic,
        what: &str,
        body: Json,
        version: u64,
    ) -> Result<Result<Duration, String>, Unreachable> {
        let from = traffic.count().await;
        let called = Instant::now();
        if let Err(why) = self.call(what, body).await? {
            return Ok(Err(why));
        }
        let want = version.to_string();
        loop {
            let since = traffic.since(from).await;
            if let Some(first) = since
                .iter()
                .find(|s| s.at >= called && s.version() == Some(want.as_str()))
            {
                let answered = first.at.saturating_duration_since(called);
                return Ok(Ok(answered));
            }
            if called.elapsed() > SWITCH_LIMIT {
                return Ok(Err(format!(
                    "no answer of version {version} within {} s of the call",
                    SWITCH_LIMIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn steps(
        &self,
        traffic: &Traffic,
        checks: &mut Vec<Check>,
        metrics: &mut std::collections::BTreeMap<String, f64>,
    ) -> Result<(), Unreachable> {
        let (candidate, last) = (self.candidate, self.last);
        // The last release serves; the candidate is loaded beside it.
        if let Err(why) = self.switch(traffic, "load", Self::pin(last), last).await? {
            checks.push(Check::new("the last release serves", false, why));
            return Ok(());
        }
        checks.push(self.shadow(traffic, metrics).await?);
        checks.push(self.canary(traffic, metrics).await?);
        // The route ends: the last release answers everything again, so
        // that the pin's first answer of the candidate is the pin's.
        if let Err(why) = self.call("route", json!({"mode": "off"})).await? {
            checks.push(Check::new("end the route", false, why));
            return Ok(());
        }
        traffic.wait(SETTLE_REQUESTS).await;
        for (name, key, version) in [
            ("pin the candidate", "pin_switch_ms", candidate),
            ("roll back", "rollback_switch_ms", last),
        ] {
            let check = match self
                .switch(traffic, "load", Self::pin(version), version)
                .await?
            {
                Ok(took) => {
                    let ms = took.as_secs_f64() * 1000.0;
                    metrics.insert(key.to_owned(), ms);
                    Check::new(
                        name,
                        true,
                        format!("version {version} answered {ms:.0} ms after the call"),
                    )
                }
                Err(why) => Check::new(name, false, why),
            };
            checks.push(check);
            traffic.wait(SETTLE_REQUESTS).await;
        }
        Ok(())
    }

    /// The candidate answers its share of the default requests.
    async fn canary(
        &self,
        traffic: &Traffic,
        metrics: &mut std::collections::BTreeMap<String, f64>,
    ) -> Result<Check, Unreachable> {
        const NAME: &str = "canary answers its share";
        let route = json!({
            "version": self.candidate.to_string(),
            "mode": "canary",
            "percent": CANARY_PERCENT,
        });
        if let Err(why) = self.call("route", route).await? {
            return Ok(Check::new(NAME, false, why));
        }
        let from = traffic.count().await;
        traffic.wait(CANARY_REQUESTS).await;
        let sent = traffic.since(from).await;
        let candidate = self.candidate.to_string();
        let by_candidate = sent
            .iter()
            .filter(|s| s.version() == Some(&candidate))
            .count();
        let share = by_candidate as f64 / sent.len().max(1) as f64;
        metrics.insert("canary_share".to_owned(), share);
        let want = CANARY_PERCENT as f64 / 100.0;
        let figures = format!(
            "version {candidate} answered {by_candidate} of {} default requests ({:.0}%) at a \
             canary of {CANARY_PERCENT}%",
            sent.len(),
            share * 100.0
        );
        Ok(Check::new(
            NAME,
            (share - want).abs() <= SHARE_MARGIN,
            figures,
        ))
    }
}
