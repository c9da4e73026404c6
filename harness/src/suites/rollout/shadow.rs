//! The shadow step: the candidate computes beside every default request's
//! answer, and the divergence the endpoint reports must be the one the
//! candidate's training-time outputs give.

use std::time::Duration;

use serde_json::{Value as Json, json};

use super::traffic::{Sent, Traffic};
use super::{DOES_NOT, Rollout, SHADOW_REQUESTS, SHARE_MARGIN};
use crate::client::{Unreachable, expected};
use crate::report::Check;

impl Rollout<'_> {
    /// The candidate in shadow for every default request: the endpoint's
    /// divergence must be what the candidate's training-time outputs give
    /// against the answers served.
    pub(super) async fn shadow(
        &self,
        traffic: &Traffic,
        metrics: &mut std::collections::BTreeMap<String, f64>,
    ) -> Result<Check, Unreachable> {
        const NAME: &str = "shadow computes the candidate";
        if let Err(why) = self.route_shadow().await? {
            return Ok(Check::new(NAME, false, why));
        }
        let candidate = self.candidate.to_string();
        let from = traffic.count().await;
        traffic.wait(SHADOW_REQUESTS).await;
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
        let (off, answered) = self.off_tolerance(&sent);
        let expected_share = off as f64 / answered.max(1) as f64;
        let share = divergent as f64 / rows.max(1) as f64;
        metrics.insert("shadow_rows".to_owned(), rows as f64);
        metrics.insert("shadow_divergent_share".to_owned(), share);
        let served_by_last = sent
            .iter()
            .all(|s| s.version().is_none_or(|v| v == self.last.to_string()));
        let figures = format!(
            "{rows} rows in shadow, {divergent} ({:.0}%) outside the candidate's tolerance of the \
             answers served; the candidate's training-time outputs give {off} of {answered} \
             ({:.0}%)",
            share * 100.0,
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

    /// Routes every default request's copy to the candidate in shadow;
    /// why not, when the endpoint refuses or sets another route.
    async fn route_shadow(&self) -> Result<Result<(), String>, Unreachable> {
        let candidate = self.candidate.to_string();
        let route = json!({"version": candidate, "mode": "shadow", "percent": 100});
        let routed = match self.call("route", route).await? {
            Ok(text) => serde_json::from_str::<Json>(&text).unwrap_or_default(),
            Err(why) => return Ok(Err(why)),
        };
        Ok(if routed["version"] == candidate.as_str() {
            Ok(())
        } else {
            Err(format!(
                "asked the endpoint to shadow version {candidate}; it set {routed}: {DOES_NOT}"
            ))
        })
    }

    /// Of the answered requests of `sent`, how many are outside the
    /// candidate's tolerance of its training-time outputs; and how many were
    /// answered.
    fn off_tolerance(&self, sent: &[Sent]) -> (usize, usize) {
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
        (off, answered.len())
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
}
