//! The drift check: drift on one input shows as that input's drift, and
//! no other's.

use preflight_bundle::{Datatype, Record, Stats, Value};

use super::{PSI_THRESHOLD, monitor, monitor_until};
use crate::client::Unreachable;
use crate::report::{Check, Skip};
use crate::suites::{CHUNK, ModelUnderTest, rows};

/// What the check is called.
const NAME: &str = "drift shows on the drifted input only";

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
pub(super) async fn drift(model: &ModelUnderTest) -> Result<Check, Unreachable> {
    let Some(samples) = model.samples.as_ref().filter(|s| !s.is_empty()) else {
        return Ok(Check::skipped(NAME, Skip::Missing, "needs samples.jsonl"));
    };
    let (input, value) = match drift_target(model) {
        Ok(target) => target,
        Err(why) => return Ok(Check::skipped(NAME, Skip::Missing, why)),
    };
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
        seen += window as u64;
        match psi_after(model, window_rows, seen).await? {
            Ok(by_input) => psi.push(by_input),
            Err(why) => return Ok(Check::new(NAME, false, why)),
        }
    }
    Ok(judge(
        &psi[0],
        &psi[1],
        (input, value),
        window,
        samples.len(),
    ))
}

/// Each input's PSI, as the monitor reports it once it has seen `rows`
/// sent and `seen` rows in all; or why it cannot say.
async fn psi_after(
    model: &ModelUnderTest,
    rows_sent: &[Record],
    seen: u64,
) -> Result<Result<Vec<(String, f64)>, String>, Unreachable> {
    let manifest = model.bundle.manifest();
    for chunk in rows_sent.chunks(CHUNK) {
        let records: Vec<&Record> = chunk.iter().collect();
        let answer = model.client.infer(manifest, &rows(&records), None).await?;
        if !answer.ok() {
            return Ok(Err(format!("a request failed: {}", answer.describe())));
        }
    }
    let report = match monitor_until(model, |r| r["rows_seen"].as_u64() >= Some(seen)).await? {
        Ok(report) => report,
        Err(why) => return Ok(Err(why)),
    };
    // No PSI (no reference bins, no row) is no drift.
    Ok(Ok(manifest
        .inputs
        .iter()
        .map(|f| {
            let p = report["inputs"][&f.name]["psi"].as_f64().unwrap_or(0.0);
            (f.name.clone(), p)
        })
        .collect()))
}

/// The check, from each input's PSI on the plain rows and on the drifted
/// ones, `input` having been set to `value` in `window` rows of `samples`.
fn judge(
    plain: &[(String, f64)],
    after: &[(String, f64)],
    (input, value): (usize, f64),
    window: usize,
    samples: usize,
) -> Check {
    let name = &plain[input].0;
    let before_drift = plain[input].1;
    let drifted_psi = after[input].1;
    if samples >= SAMPLES_FOR_A_BASELINE
        && let Some((other, p)) = plain.iter().find(|(_, p)| *p > PSI_THRESHOLD)
    {
        return Check::new(
            NAME,
            false,
            format!(
                "on the bundle's own samples, as they are, '{other}' shows PSI {p:.3}, above \
                 {PSI_THRESHOLD}: the endpoint sees them otherwise than the training data"
            ),
        );
    }
    let setting = format!(
        "'{name}' set to {value} (its training data's last bin) in {window} rows: PSI \
         {drifted_psi:.3}, against {before_drift:.3} on the same rows as they are"
    );
    if drifted_psi <= PSI_THRESHOLD.max(before_drift) {
        return Check::new(
            NAME,
            false,
            format!("{setting}: the monitor misses the drift"),
        );
    }
    let moved = plain
        .iter()
        .zip(after)
        .enumerate()
        .filter(|(i, _)| *i != input)
        .find(|(_, ((_, p0), (_, p1)))| (p1 - p0).abs() > 1e-9);
    match moved {
        Some((_, ((other, p0), (_, p1)))) => Check::new(
            NAME,
            false,
            format!(
                "{setting}; but '{other}' moved from PSI {p0:.3} to {p1:.3}, although only \
                 '{name}' drifted"
            ),
        ),
        None => Check::new(
            NAME,
            true,
            format!(
                "{setting}; no other input's PSI moved (the highest, {})",
                highest_other(plain, input)
            ),
        ),
    }
}

/// The input other than `input` with the highest PSI, and its PSI.
fn highest_other(psi: &[(String, f64)], input: usize) -> String {
    psi.iter()
        .enumerate()
        .filter(|(i, _)| *i != input)
        .map(|(_, (n, p))| (n, *p))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or("none".to_owned(), |(n, p)| format!("'{n}' {p:.3}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Verdict;

    fn psi(values: &[(&str, f64)]) -> Vec<(String, f64)> {
        values.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect()
    }

    #[test]
    fn only_the_drifted_input_may_move() {
        let plain = psi(&[("distance_km", 0.01), ("hour", 0.02)]);
        let drifted = psi(&[("distance_km", 3.2), ("hour", 0.02)]);
        let check = judge(&plain, &drifted, (0, 40.0), 1000, 500);
        assert_eq!(check.verdict, Verdict::Passed, "{}", check.message);
        assert!(
            check.message.contains("(the highest, 'hour' 0.020)"),
            "{}",
            check.message
        );

        let moved = psi(&[("distance_km", 3.2), ("hour", 0.5)]);
        let check = judge(&plain, &moved, (0, 40.0), 1000, 500);
        assert_eq!(check.verdict, Verdict::Failed);
        assert!(
            check
                .message
                .contains("'hour' moved from PSI 0.020 to 0.500"),
            "{}",
            check.message
        );
    }

    #[test]
    fn a_drift_at_or_under_the_threshold_is_missed() {
        let plain = psi(&[("distance_km", 0.01)]);
        for after in [PSI_THRESHOLD, 0.1] {
            let check = judge(
                &plain,
                &psi(&[("distance_km", after)]),
                (0, 40.0),
                1000,
                500,
            );
            assert_eq!(check.verdict, Verdict::Failed);
            assert!(
                check.message.ends_with("the monitor misses the drift"),
                "{}",
                check.message
            );
        }
        // Already over the threshold as they are: the drift must add to it.
        let plain = psi(&[("distance_km", 0.9)]);
        let check = judge(&plain, &psi(&[("distance_km", 0.9)]), (0, 40.0), 1000, 100);
        assert_eq!(check.verdict, Verdict::Failed);
    }

    #[test]
    fn enough_samples_as_they_are_must_not_drift() {
        let plain = psi(&[("distance_km", 0.01), ("hour", 0.3)]);
        let drifted = psi(&[("distance_km", 3.2), ("hour", 0.3)]);
        let few = judge(
            &plain,
            &drifted,
            (0, 40.0),
            1000,
            SAMPLES_FOR_A_BASELINE - 1,
        );
        assert_eq!(few.verdict, Verdict::Passed, "{}", few.message);
        let enough = judge(&plain, &drifted, (0, 40.0), 1000, SAMPLES_FOR_A_BASELINE);
        assert_eq!(enough.verdict, Verdict::Failed);
        assert!(
            enough.message.contains("'hour' shows PSI 0.300"),
            "{}",
            enough.message
        );
    }
}
