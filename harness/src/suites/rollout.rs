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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use preflight_bundle::{Record, Tolerance};
use serde_json::{Value as Json, json};
use tokio::sync::Mutex;

use super::Phase;
use super::descriptor::Descriptor;
use super::{ModelUnderTest, Suite, offers, skipped};
use crate::client::{Answer, Client, Prepared, Unreachable, expected};
use crate::report::{Check, Skip, SuiteReport};

/// What the rest of the harness knows of the suite (`Suite::descriptor`).
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    // Mostly waiting on steady traffic: many models at once.
    phase: Phase::Rollout,
    ..Descriptor::FUNCTIONAL
};

/// Requests in each phase of the rollout.
const PHASE_REQUESTS: usize = 100;
/// The canary's share, in percent.
const CANARY_PERCENT: u64 = 50;
/// How far the share of the canary's answers, and the shadow's divergent
/// share, may be from what is expected.
const SHARE_MARGIN: f64 = 0.15;
/// What a failed shadow check concludes.
const DOES_NOT: &str = "the shadow does not compute the candidate";
/// How long a switch may take before the suite stops waiting for it.
const SWITCH_LIMIT: Duration = Duration::from_secs(10);

/// One answer of the steady traffic.
#[derive(Debug, Clone)]
struct Sent {
    at: Instant,
    sample: usize,
    answer: Result<Answer, String>,
}

impl Sent {
    fn version(&self) -> Option<&str> {
        self.answer.as_ref().ok()?.model_version.as_deref()
    }
}

/// Default-route requests at a steady rate until stopped, one sample each.
struct Traffic {
    sent: Arc<Mutex<Vec<Sent>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(model: &ModelUnderTest, samples: &[Record], rate: f64) -> Result<Self, Unreachable> {
        let manifest = model.bundle.manifest().clone();
        let client: Client = model.client.clone();
        let name = &manifest.model.name;
        let requests = samples.iter().map(|r| {
            let body = manifest.infer_request(&[r.inputs.as_slice()]);
            client.prepare(name, None, &body)
        });
        let requests: Vec<Prepared> = requests.collect::<Result<_, _>>()?;
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (sent, stop) = (Arc::clone(&sent), Arc::clone(&stop));
            async move {
                let period = Duration::from_secs_f64(1.0 / rate);
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let sample = i % requests.len();
                    i += 1;
                    let at = Instant::now();
                    let answer = client
                        .send(&requests[sample], &manifest, 1)
                        .await
                        .map_err(|e| e.to_string());
                    sent.lock().await.push(Sent { at, sample, answer });
                }
            }
        });
        Ok(Self { sent, stop, task })
    }

    async fn count(&self) -> usize {
        self.sent.lock().await.len()
    }

    /// Waits until `n` more requests have been answered.
    async fn wait(&self, n: usize) {
        let target = self.count().await + n;
        while self.count().await < target {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The answers from the `from`-th on.
    async fn since(&self, from: usize) -> Vec<Sent> {
        self.sent.lock().await[from..].to_vec()
    }

    async fn finish(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let sent = self.sent.lock().await;
        sent.clone()
    }
}

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
    let manifest = model.bundle.manifest();
    let Some(previous) = &model.previous else {
        return Ok(skipped(
            Suite::Rollout,
            Skip::NotApplicable,
            format!(
                "the repository holds no version of '{}' below {} to roll back to",
                manifest.model.name, manifest.model.version
            ),
        ));
    };
    let Some(samples) = model.samples.as_ref().filter(|s| !s.is_empty()) else {
        return Ok(skipped(
            Suite::Rollout,
            Skip::Missing,
            "needs samples.jsonl",
        ));
    };
    if !model.client.has_repository_token() {
        return Ok(skipped(
            Suite::Rollout,
            Skip::Endpoint,
            "the suite changes what the endpoint serves through its repository API: it runs on \
             an endpoint this run started, or a url= target given --repository-token",
        ));
    }
    if let Some(skip) = offers(model, Suite::Rollout, "preflight_rollout", "rollout").await? {
        return Ok(skip);
    }
    let rate = rate(manifest);
    let candidate = manifest.model.version;
    let last = previous.version();
    let rollout = Rollout {
        model,
        candidate,
        last,
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
    let failed: Vec<&Sent> = sent
        .iter()
        .filter(|s| !s.answer.as_ref().is_ok_and(Answer::ok))
        .collect();
    metrics.insert("requests".to_owned(), sent.len() as f64);
    metrics.insert("failed".to_owned(), failed.len() as f64);
    checks.push(Check::new(
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
    ));
    let mut report = SuiteReport::new(Suite::Rollout.name(), checks);
    report.metrics = metrics;
    Ok(report)
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
        traffic.wait(PHASE_REQUESTS / 4).await;
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
            traffic.wait(PHASE_REQUESTS / 4).await;
        }
        Ok(())
    }

    /// The candidate in shadow for every default request: the endpoint's
    /// divergence must be what the candidate's training-time outputs give
    /// against the answers served.
    async fn shadow(
        &self,
        traffic: &Traffic,
        metrics: &mut std::collections::BTreeMap<String, f64>,
    ) -> Result<Check, Unreachable> {
        const NAME: &str = "shadow computes the candidate";
        let route =
            json!({"version": self.candidate.to_string(), "mode": "shadow", "percent": 100});
        let routed = match self.call("route", route).await? {
            Ok(text) => serde_json::from_str::<Json>(&text).unwrap_or_default(),
            Err(why) => return Ok(Check::new(NAME, false, why)),
        };
        let candidate = self.candidate.to_string();
        if routed["version"] != candidate.as_str() {
            return Ok(Check::new(
                NAME,
                false,
                format!(
                    "asked the endpoint to shadow version {candidate}; it set {routed}: {DOES_NOT}"
                ),
            ));
        }
        let from = traffic.count().await;
        traffic.wait(PHASE_REQUESTS).await;
        let sent = traffic.since(from).await;
        // The shadow runs after the answer: give the last ones a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let figures = self.shadow_figures().await?;
        let Some((rows, divergent)) = figures else {
            return Ok(Check::new(
                NAME,
                false,
                format!("/metrics has no shadow figures of version {candidate}: {DOES_NOT}"),
            ));
        };
        let answered: Vec<(f64, f64)> = sent
            .iter()
            .filter_map(|s| {
                let answer = s.answer.as_ref().ok().filter(|a| a.ok())?;
                let served = *answer.outputs.first()?.first()?;
                Some((
                    expected(self.model.bundle.manifest(), &self.samples[s.sample], 0),
                    served,
                ))
            })
            .collect();
        let off = answered
            .iter()
            .filter(|(candidate, served)| !self.tolerance.accepts(*candidate, *served))
            .count();
        let expected_share = off as f64 / answered.len().max(1) as f64;
        let share = divergent as f64 / rows.max(1) as f64;
        metrics.insert("shadow_rows".to_owned(), rows as f64);
        metrics.insert("shadow_divergent_share".to_owned(), share);
        let served_by_last = sent
            .iter()
            .all(|s| s.version().is_none_or(|v| v == self.last.to_string()));
        let figures = format!(
            "{rows} rows in shadow, {divergent} ({:.0}%) outside the candidate's tolerance of the \
             answers served; the candidate's training-time outputs give {off} of {} ({:.0}%)",
            share * 100.0,
            answered.len(),
            expected_share * 100.0
        );
        Ok(if rows == 0 {
            Check::new(
                NAME,
                false,
                format!("{figures}: the shadow computed nothing"),
            )
        } else if (share - expected_share).abs() > SHARE_MARGIN {
            Check::new(NAME, false, format!("{figures}: {DOES_NOT}"))
        } else if !served_by_last {
            Check::new(
                NAME,
                false,
                format!("{figures}; but the candidate answered requests in shadow mode"),
            )
        } else {
            Check::new(NAME, true, figures)
        })
    }

    /// `preflight_shadow_rows_total` and `preflight_shadow_divergent_rows_total`
    /// of the candidate's route.
    async fn shadow_figures(&self) -> Result<Option<(u64, u64)>, Unreachable> {
        let (status, text) = self.model.client.get_text("/metrics").await?;
        if status != 200 {
            return Ok(None);
        }
        let name = &self.model.bundle.manifest().model.name;
        let labels = format!(
            "{{model=\"{name}\",version=\"{}\",mode=\"shadow\"}}",
            self.candidate
        );
        let value = |family: &str| {
            let series = format!("{family}{labels} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&series))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|v| v as u64)
        };
        Ok(
            value("preflight_shadow_rows_total")
                .zip(value("preflight_shadow_divergent_rows_total")),
        )
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
        traffic.wait(PHASE_REQUESTS).await;
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
