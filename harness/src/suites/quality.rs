//! `quality`: the hold-out through the endpoint, scored with the contract's
//! metric against its absolute bound and against the baseline release.

use preflight_bundle::{Metric, QualityBudget, Record};

use super::{CHUNK, ModelUnderTest, Suite, rows, skipped};
use crate::client::Unreachable;
use crate::report::{Check, Limit, Skip, SuiteReport};

pub(super) async fn run(model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    let manifest = model.bundle.manifest();
    let (Some(holdout), Some(budget)) = (&model.holdout, &manifest.contract.quality) else {
        return Ok(skipped(
            Suite::Quality,
            Skip::Missing,
            super::needs(&[
                ("holdout.jsonl", model.holdout.is_some()),
                ("contract.quality", manifest.contract.quality.is_some()),
            ]),
        ));
    };
    let scored = match score(model, holdout, budget.metric, None).await? {
        Ok(value) => value,
        Err(why) => {
            return Ok(SuiteReport::new(
                Suite::Quality.name(),
                vec![Check::new(budget.metric.as_str(), false, why)],
            ));
        }
    };
    let output = &manifest.outputs[0].name;
    let mut checks = vec![bound_check(budget, output, scored)];
    checks.push(
        match (
            budget.max_regression,
            model.baseline_metric(Suite::Quality, budget.metric.as_str()),
        ) {
            (None, _) => Check::skipped(
                "against the baseline",
                Skip::Missing,
                "the contract sets no max_regression",
            ),
            (Some(_), Err((skip, why))) => Check::skipped("against the baseline", skip, why),
            (Some(limit), Ok(base)) => {
                // Positive when worse, whichever way the metric points.
                let change = if budget.metric.higher_is_better() {
                    (base - scored) / base.abs()
                } else {
                    (scored - base) / base.abs()
                };
                Check::new(
                    "against the baseline",
                    change <= limit,
                    format!(
                        "{} of '{output}' {scored:.4} against the baseline's {base:.4}: {:+.1}% \
                        worse (limit {:.0}%)",
                        budget.metric.as_str(),
                        change * 100.0,
                        limit * 100.0
                    ),
                )
            }
        },
    );
    let mut report = SuiteReport::new(Suite::Quality.name(), checks);
    report
        .metrics
        .insert(budget.metric.as_str().to_owned(), scored);
    report.limits.extend(limit(budget));
    Ok(report)
}

/// The budget's bound on its metric, by the metric's name.
pub(super) fn limit(budget: &QualityBudget) -> Option<(String, Limit)> {
    let bound = match (budget.max, budget.min) {
        (Some(max), _) => Limit::Max(max),
        (None, Some(min)) => Limit::Min(min),
        (None, None) => return None,
    };
    Some((budget.metric.as_str().to_owned(), bound))
}

/// The bound of a budget: `max` for error metrics, `min` for accuracy;
/// `output` is the output scored, the manifest's first.
pub(super) fn bound_check(budget: &QualityBudget, output: &str, value: f64) -> Check {
    let name = budget.metric.as_str();
    match (budget.max, budget.min) {
        (Some(max), _) => Check::new(
            name,
            value <= max,
            format!("{name} of '{output}' {value:.4} on the hold-out, max {max}"),
        ),
        (None, Some(min)) => Check::new(
            name,
            value >= min,
            format!("{name} of '{output}' {value:.4} on the hold-out, min {min}"),
        ),
        (None, None) => Check::skipped(
            name,
            Skip::Missing,
            format!("{name} of '{output}' {value:.4} on the hold-out; the contract sets no bound"),
        ),
    }
}

/// The metric over the hold-out, sent in chunks with `parameters`; `Ok(Err)`
/// when the endpoint answered but not with predictions.
pub(super) async fn score(
    model: &ModelUnderTest,
    holdout: &[Record],
    metric: Metric,
    parameters: Option<serde_json::Value>,
) -> Result<Result<f64, String>, Unreachable> {
    let manifest = model.bundle.manifest();
    let mut truth = Vec::with_capacity(holdout.len());
    let mut predicted = Vec::with_capacity(holdout.len());
    for chunk in holdout.chunks(CHUNK) {
        let records: Vec<&Record> = chunk.iter().collect();
        let answer = model
            .client
            .infer(manifest, &rows(&records), parameters.clone())
            .await?;
        if !answer.ok() {
            return Ok(Err(format!(
                "the hold-out could not be scored: rows {}..{} answered {}",
                chunk[0].id,
                chunk[chunk.len() - 1].id,
                answer.describe()
            )));
        }
        predicted.extend_from_slice(&answer.outputs[0]);
        truth.extend(chunk.iter().map(|r| {
            r.target
                .as_ref()
                .and_then(|t| t[0].as_f64())
                .unwrap_or(f64::NAN)
        }));
    }
    Ok(evaluate(metric, &truth, &predicted))
}

fn evaluate(metric: Metric, truth: &[f64], predicted: &[f64]) -> Result<f64, String> {
    let n = truth.len() as f64;
    let pairs = truth.iter().zip(predicted);
    match metric {
        Metric::Mae => Ok(pairs.map(|(t, p)| (t - p).abs()).sum::<f64>() / n),
        Metric::Rmse => Ok((pairs.map(|(t, p)| (t - p).powi(2)).sum::<f64>() / n).sqrt()),
        Metric::Mape => {
            let nonzero: Vec<f64> = pairs
                .filter(|(t, _)| **t != 0.0)
                .map(|(t, p)| ((t - p) / t).abs())
                .collect();
            Ok(100.0 * nonzero.iter().sum::<f64>() / nonzero.len().max(1) as f64)
        }
        other => Err(format!(
            "the {} metric is not computed by this version of preflight",
            other.as_str()
        )),
    }
}
