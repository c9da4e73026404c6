//! `quality`: the hold-out through the endpoint, scored with each of the
//! contract's metrics against its absolute bound and against the baseline
//! release; every metric of the task is reported (a classifier's accuracy,
//! log loss, ROC AUC and Brier score).

use preflight_bundle::{Metric, QualityBudget, Record};

use super::descriptor::{Descriptor, KeyFigures};
use super::{CHUNK, ModelUnderTest, Suite, rows, scoring, skipped};
use crate::client::Unreachable;
use crate::report::{Check, Limit, Skip, SuiteReport};

/// What the rest of the harness knows of the suite (`Suite::descriptor`).
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    // The contract's metrics, whatever their names; the others a quality
    // suite reports (a classifier's four) stay in report.json.
    key_figures: KeyFigures::Bounded,
    ..Descriptor::FUNCTIONAL
};

pub(super) async fn run(model: &ModelUnderTest) -> Result<SuiteReport, Unreachable> {
    let manifest = model.bundle.manifest();
    let budgets = &manifest.contract.quality;
    let Some(holdout) = model.holdout.as_ref().filter(|_| !budgets.is_empty()) else {
        return Ok(skipped(
            Suite::Quality,
            Skip::Missing,
            super::needs(&[
                ("holdout.jsonl", model.holdout.is_some()),
                ("contract.quality", !budgets.is_empty()),
            ]),
        ));
    };
    let answers = match answered(model, holdout, None).await? {
        Ok(answers) => answers,
        Err(why) => {
            let name = budgets[0].metric.as_str();
            let check = Check::new(name, false, why);
            return Ok(SuiteReport::new(Suite::Quality.name(), vec![check]));
        }
    };
    let output = scored_output(manifest);
    let mut checks = Vec::new();
    let mut report_metrics = std::collections::BTreeMap::new();
    // Every metric of the task is reported; the contract's are judged.
    for metric in scoring::reported(manifest) {
        if let Ok(value) = scoring::score(manifest, metric, &answers) {
            report_metrics.insert(metric.as_str().to_owned(), value);
        }
    }
    for budget in budgets {
        let scored = match scoring::score(manifest, budget.metric, &answers) {
            Ok(value) => value,
            Err(why) => {
                checks.push(Check::new(budget.metric.as_str(), false, why.to_string()));
                continue;
            }
        };
        report_metrics.insert(budget.metric.as_str().to_owned(), scored);
        checks.push(bound_check(budget, &output, scored));
        checks.push(against_baseline(model, budget, &output, scored));
    }
    let mut report = SuiteReport::new(Suite::Quality.name(), checks);
    report.metrics = report_metrics;
    report.limits.extend(budgets.iter().filter_map(limit));
    Ok(report)
}

/// What the metrics score: the regression output, or a classifier's label
/// and probabilities.
pub(super) fn scored_output(manifest: &preflight_bundle::Manifest) -> String {
    match manifest.classifier() {
        Some(c) => format!(
            "{}', '{}",
            manifest.outputs[c.label].name, manifest.outputs[c.probabilities].name
        ),
        None => manifest.outputs[0].name.clone(),
    }
}

/// The budget's metric against the baseline release's, within its
/// `max_regression`; named after the metric where the contract bounds
/// several.
fn against_baseline(
    model: &ModelUnderTest,
    budget: &QualityBudget,
    output: &str,
    scored: f64,
) -> Check {
    let name = if model.bundle.manifest().contract.quality.len() > 1 {
        format!("{} against the baseline", budget.metric.as_str())
    } else {
        "against the baseline".to_owned()
    };
    match (
        budget.max_regression,
        model.baseline_metric(Suite::Quality, budget.metric.as_str()),
    ) {
        (None, _) => Check::skipped(&name, Skip::Missing, "the contract sets no max_regression"),
        (Some(_), Err((skip, why))) => Check::skipped(&name, skip, why),
        (Some(limit), Ok(base)) => {
            // Positive when worse, whichever way the metric points.
            let change = if budget.metric.higher_is_better() {
                (base - scored) / base.abs()
            } else {
                (scored - base) / base.abs()
            };
            Check::new(
                &name,
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
    }
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
    // A failure says so in words: its explanation names the breach.
    match (budget.max, budget.min) {
        (Some(max), _) => {
            let within = value <= max;
            let bound = if within { "max" } else { "over the max" };
            Check::new(
                name,
                within,
                format!("{name} of '{output}' {value:.4} on the hold-out, {bound} {max}"),
            )
        }
        (None, Some(min)) => {
            let within = value >= min;
            let bound = if within { "min" } else { "under the min" };
            Check::new(
                name,
                within,
                format!("{name} of '{output}' {value:.4} on the hold-out, {bound} {min}"),
            )
        }
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
    Ok(answered(model, holdout, parameters)
        .await?
        .and_then(|answers| scoring::score(manifest, metric, &answers).map_err(|e| e.to_string())))
}

/// The hold-out's answers, sent in chunks with `parameters`; `Ok(Err)` when
/// the endpoint answered but not with predictions.
async fn answered(
    model: &ModelUnderTest,
    holdout: &[Record],
    parameters: Option<serde_json::Value>,
) -> Result<Result<scoring::Answers, String>, Unreachable> {
    let manifest = model.bundle.manifest();
    let mut answers = scoring::Answers::default();
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
        answers.extend(manifest, &answer.outputs, chunk);
    }
    Ok(Ok(answers))
}
