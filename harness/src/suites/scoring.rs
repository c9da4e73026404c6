//! The hold-out metrics: a regressor's errors, and a classifier's accuracy,
//! log loss, ROC AUC and Brier score, over answers read as slots
//! (`crate::slots`).

use preflight_bundle::{Manifest, Metric, Record};

use crate::slots;

/// The hold-out's answers: each row's slot values, served and true.
#[derive(Debug, Default)]
pub(super) struct Answers {
    /// Each row's served slot values.
    pub(super) served: Vec<Vec<f64>>,
    /// Each row's true slot values (the target: a classifier's label only).
    pub(super) truth: Vec<Vec<f64>>,
}

impl Answers {
    /// Adds the rows of one answer (slot columns) and their records' targets.
    pub(super) fn extend(&mut self, manifest: &Manifest, columns: &[Vec<f64>], records: &[Record]) {
        for (i, record) in records.iter().enumerate() {
            self.served.push(slots::row(columns, i));
            self.truth.push(
                record
                    .target
                    .as_ref()
                    .map(|t| slots::values(manifest, t))
                    .unwrap_or_default(),
            );
        }
    }
}

impl Answers {
    /// The last `n` rows.
    pub(super) fn last(&self, n: usize) -> Answers {
        let from = self.served.len().saturating_sub(n);
        Answers {
            served: self.served[from..].to_vec(),
            truth: self.truth[from..].to_vec(),
        }
    }
}

/// The metrics a model's hold-out reports: every metric of its task that
/// this version computes.
pub(super) fn reported(manifest: &Manifest) -> Vec<Metric> {
    if manifest.classifier().is_some() {
        vec![
            Metric::Accuracy,
            Metric::LogLoss,
            Metric::RocAuc,
            Metric::Brier,
        ]
    } else {
        vec![Metric::Mae, Metric::Rmse]
    }
}

/// Why a metric cannot be computed over the answers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum ScoreError {
    #[error("no hold-out row was answered")]
    NothingAnswered,
    #[error("no hold-out row has a target that is a class of the model")]
    NoClass,
    #[error("ROC AUC needs both a class and another in the hold-out")]
    OneClass,
    #[error("{} applies to a classifier, not a regression model", .0.as_str())]
    ForClassifiers(Metric),
    #[error("{} applies to a regression model, not a classifier", .0.as_str())]
    ForRegression(Metric),
}

/// `metric` over the answers, or why it cannot be computed.
pub(super) fn score(
    manifest: &Manifest,
    metric: Metric,
    answers: &Answers,
) -> Result<f64, ScoreError> {
    if answers.served.is_empty() {
        return Err(ScoreError::NothingAnswered);
    }
    match manifest.classifier() {
        None => regression(metric, answers),
        Some(_) => classification(manifest, metric, answers),
    }
}

fn regression(metric: Metric, answers: &Answers) -> Result<f64, ScoreError> {
    let pairs: Vec<(f64, f64)> = answers
        .truth
        .iter()
        .zip(&answers.served)
        .map(|(t, p)| (first(t), first(p)))
        .collect();
    let n = pairs.len() as f64;
    match metric {
        Metric::Mae => Ok(pairs.iter().map(|(t, p)| (t - p).abs()).sum::<f64>() / n),
        Metric::Rmse => Ok((pairs.iter().map(|(t, p)| (t - p).powi(2)).sum::<f64>() / n).sqrt()),
        Metric::Mape => {
            let nonzero: Vec<f64> = pairs
                .iter()
                .filter(|(t, _)| *t != 0.0)
                .map(|(t, p)| ((t - p) / t).abs())
                .collect();
            Ok(100.0 * nonzero.iter().sum::<f64>() / nonzero.len().max(1) as f64)
        }
        other => Err(ScoreError::ForClassifiers(other)),
    }
}

fn first(values: &[f64]) -> f64 {
    values.first().copied().unwrap_or(f64::NAN)
}

/// The smallest probability a log loss takes: the log of 0 is no number.
const EPS: f64 = f64::EPSILON;

fn classification(
    manifest: &Manifest,
    metric: Metric,
    answers: &Answers,
) -> Result<f64, ScoreError> {
    let rows: Vec<(usize, slots::Classified<'_>)> = answers
        .truth
        .iter()
        .zip(&answers.served)
        .filter_map(|(t, p)| {
            let truth = slots::classified(manifest, t)?.label;
            let served = slots::classified(manifest, p)?;
            (truth >= 0.0).then_some((truth as usize, served))
        })
        .collect();
    if rows.is_empty() {
        return Err(ScoreError::NoClass);
    }
    let n = rows.len() as f64;
    let k = manifest.classifier().map_or(0, |c| c.k());
    Ok(match metric {
        Metric::Accuracy => rows.iter().filter(|(t, p)| p.label == *t as f64).count() as f64 / n,
        Metric::LogLoss => {
            rows.iter()
                .map(|(t, p)| -p.probabilities[*t].clamp(EPS, 1.0 - EPS).ln())
                .sum::<f64>()
                / n
        }
        Metric::Brier => {
            let sum: f64 = rows
                .iter()
                .map(|(t, p)| {
                    (p.probabilities.iter().enumerate())
                        .map(|(c, q)| (q - f64::from(u8::from(c == *t))).powi(2))
                        .sum::<f64>()
                })
                .sum();
            // scikit-learn's brier_score_loss: halved for two classes.
            let scale = if k == 2 { 0.5 } else { 1.0 };
            scale * sum / n
        }
        Metric::RocAuc => {
            let positives: Vec<usize> = if k == 2 { vec![1] } else { (0..k).collect() };
            let aucs: Vec<f64> = positives
                .iter()
                .filter_map(|&c| {
                    let scored: Vec<(f64, bool)> = rows
                        .iter()
                        .map(|(t, p)| (p.probabilities[c], *t == c))
                        .collect();
                    auc(&scored)
                })
                .collect();
            if aucs.is_empty() {
                return Err(ScoreError::OneClass);
            }
            aucs.iter().sum::<f64>() / aucs.len() as f64
        }
        other => return Err(ScoreError::ForRegression(other)),
    })
}

/// The area under the ROC curve of scores against labels: the share of
/// (positive, negative) pairs the score orders right, ties counting half
/// (the Mann–Whitney statistic). `None` without both kinds of label.
fn auc(scored: &[(f64, bool)]) -> Option<f64> {
    let mut sorted: Vec<(f64, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = sorted.iter().filter(|s| s.1).count() as f64;
    let negatives = sorted.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Average ranks over ties, 1-based.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].0 == sorted[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += rank * sorted[i..=j].iter().filter(|s| s.1).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

#[cfg(test)]
mod tests {
    use super::auc;

    #[test]
    fn auc_is_the_share_of_pairs_in_order() {
        let perfect = [(0.1, false), (0.4, false), (0.6, true), (0.9, true)];
        assert_eq!(auc(&perfect), Some(1.0));
        let reversed = [(0.9, false), (0.6, false), (0.4, true), (0.1, true)];
        assert_eq!(auc(&reversed), Some(0.0));
        // scikit-learn's roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.75.
        let mixed = [(0.1, false), (0.4, false), (0.35, true), (0.8, true)];
        assert_eq!(auc(&mixed), Some(0.75));
        // A tie between a positive and a negative counts half.
        assert_eq!(auc(&[(0.5, false), (0.5, true)]), Some(0.5));
        assert_eq!(auc(&[(0.5, true)]), None);
    }
}
