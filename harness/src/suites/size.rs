//! `size`: the artifact's bytes against the budget and against the baseline
//! release's, and the endpoint's resident memory where the target can tell.

use super::{ModelUnderTest, Suite, skipped};
use crate::report::{Check, Skip, SuiteReport};

pub(super) fn run(model: &ModelUnderTest) -> SuiteReport {
    let Some(budget) = &model.bundle.manifest().contract.size else {
        return skipped(Suite::Size, Skip::Missing, "needs contract.size");
    };
    let bytes = match model.bundle.model_bytes() {
        Ok(b) => b,
        Err(e) => {
            return SuiteReport::new(
                Suite::Size.name(),
                vec![Check::new("model bytes", false, e.to_string())],
            );
        }
    };
    let mut checks = vec![match budget.max_model_bytes {
        Some(max) => Check::new(
            "max_model_bytes",
            bytes <= max,
            format!("{bytes} bytes, budget max_model_bytes {max}"),
        ),
        None => Check::skipped(
            "max_model_bytes",
            Skip::Missing,
            "the contract sets no max_model_bytes",
        ),
    }];
    checks.push(
        match (
            budget.max_growth,
            model.baseline_metric(Suite::Size, "model_bytes"),
        ) {
            (None, _) => Check::skipped(
                "growth against the baseline",
                Skip::Missing,
                "the contract sets no max_growth",
            ),
            (Some(_), Err((skip, why))) => Check::skipped("growth against the baseline", skip, why),
            (Some(limit), Ok(base)) => {
                let growth = bytes as f64 / base - 1.0;
                Check::new(
                    "growth against the baseline",
                    growth <= limit,
                    format!(
                        "{bytes} bytes against the baseline's {base:.0} ({:+.1}%, limit +{:.0}%)",
                        growth * 100.0,
                        limit * 100.0
                    ),
                )
            }
        },
    );
    let mut report = SuiteReport::new(Suite::Size.name(), checks);
    report
        .metrics
        .insert("model_bytes".to_owned(), bytes as f64);
    if let Some(bytes) = model.image_bytes {
        report
            .metrics
            .insert("image_bytes".to_owned(), bytes as f64);
    }
    if let Some(rss) = model.memory_after_load {
        report
            .metrics
            .insert("endpoint_resident_bytes_after_load".to_owned(), rss as f64);
    }
    // The suites run in order, so this is after the latency run.
    if let Some(rss) = model.memory.as_ref().and_then(|read| read()) {
        report
            .metrics
            .insert("endpoint_resident_bytes".to_owned(), rss as f64);
    }
    report
}
