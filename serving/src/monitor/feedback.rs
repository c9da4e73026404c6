//! Live model error: the predictions served under each request id, kept a
//! while, joined with the targets a client observes later, and the
//! contract's quality metric over the last rows joined.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use preflight_bundle::Metric;

/// The contract's metric over the last `capacity` rows that got feedback.
#[derive(Debug)]
pub(super) struct LiveError {
    metric: Metric,
    /// A classifier's number of classes; 0 for a regressor.
    classes: usize,
    /// Each row's term of the metric: |error|, error², percentage error,
    /// 1 for a right label, the log loss or the Brier score of a row.
    terms: VecDeque<f64>,
    capacity: usize,
}

/// The live error as the monitor shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct LiveFigure {
    pub metric: &'static str,
    pub value: f64,
    /// Rows the value is computed over.
    pub count: usize,
}

impl LiveError {
    /// `None` for a metric no served row scores alone (ROC AUC ranks the
    /// rows), or a classifier's metric for a regressor and the reverse.
    /// `classes` is a classifier's number of classes.
    pub(super) fn new(metric: Metric, classes: Option<usize>, capacity: usize) -> Option<Self> {
        let live = match classes {
            None => matches!(metric, Metric::Mae | Metric::Rmse | Metric::Mape),
            Some(_) => matches!(metric, Metric::Accuracy | Metric::LogLoss | Metric::Brier),
        };
        live.then(|| Self {
            metric,
            classes: classes.unwrap_or(0),
            terms: VecDeque::new(),
            capacity: capacity.max(1),
        })
    }

    /// One scored row (a value, or a classifier's label position and
    /// probabilities) against its target (a value, or a class position).
    pub(super) fn push(&mut self, row: &[f64], target: f64) {
        let Some(&predicted) = row.first() else {
            return;
        };
        let error = predicted - target;
        let probability = |k: f64| -> f64 {
            if k >= 0.0 {
                row.get(1 + k as usize).copied().unwrap_or(f64::NAN)
            } else {
                f64::NAN
            }
        };
        let term = match self.metric {
            Metric::Mae => error.abs(),
            Metric::Rmse => error * error,
            Metric::Mape => 100.0 * error.abs() / target.abs().max(f64::MIN_POSITIVE),
            Metric::Accuracy => f64::from(u8::from(predicted == target)),
            // As the harness and scikit-learn compute it: clipped, never the log of 0.
            Metric::LogLoss => -probability(target)
                .clamp(f64::EPSILON, 1.0 - f64::EPSILON)
                .ln(),
            Metric::Brier => {
                let sum: f64 = (0..self.classes)
                    .map(|k| {
                        (probability(k as f64) - f64::from(u8::from(k as f64 == target))).powi(2)
                    })
                    .sum();
                // scikit-learn's brier_score_loss: halved for two classes.
                if self.classes == 2 { sum / 2.0 } else { sum }
            }
            // Not live: see `new`.
            _ => return,
        };
        if !term.is_finite() {
            return;
        }
        if self.terms.len() == self.capacity {
            self.terms.pop_front();
        }
        self.terms.push_back(term);
    }

    pub(super) fn figure(&self) -> Option<LiveFigure> {
        if self.terms.is_empty() {
            return None;
        }
        let mean = self.terms.iter().sum::<f64>() / self.terms.len() as f64;
        Some(LiveFigure {
            metric: self.metric.as_str(),
            value: if self.metric == Metric::Rmse {
                mean.sqrt()
            } else {
                mean
            },
            count: self.terms.len(),
        })
    }
}

/// A prediction waiting for its target, with the version `V` it is
/// joined into (the monitor's `Arc<VersionMonitor>`).
#[derive(Debug)]
pub(super) struct Waiting<V> {
    pub version: V,
    /// Each row's scored values (`Scoring::rows`), flat.
    pub predicted: Vec<f64>,
    expires: Instant,
}

/// Why a prediction left the store without feedback.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Eviction {
    /// The store was full: the oldest went.
    Capacity,
    /// It waited longer than the TTL.
    Expired,
}

/// A prediction's model and request id.
pub(super) type Key = (String, String);

/// The predictions waiting for feedback, by model and request id: at most
/// `capacity`, each for at most `ttl`.
#[derive(Debug)]
pub(super) struct Pending<V> {
    /// Each key is shared with its entry in `order`, not copied.
    waiting: HashMap<Arc<Key>, Waiting<V>>,
    /// Keys in the order they came, with their expiry; a key given again
    /// is found here twice, and the older entry is skipped.
    order: VecDeque<(Arc<Key>, Instant)>,
    capacity: usize,
    ttl: Duration,
}

impl<V> Pending<V> {
    pub(super) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            waiting: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    pub(super) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Keeps a prediction; `evicted` is told of each one that leaves for it.
    pub(super) fn insert(
        &mut self,
        key: Key,
        version: V,
        predicted: Vec<f64>,
        now: Instant,
        evicted: &mut dyn FnMut(Eviction),
    ) {
        self.expire(now, evicted);
        while self.waiting.len() >= self.capacity {
            let Some((old, _)) = self.order.pop_front() else {
                break;
            };
            if self.waiting.remove(old.as_ref()).is_some() {
                evicted(Eviction::Capacity);
            }
        }
        let expires = now + self.ttl;
        let key = Arc::new(key);
        self.order.push_back((Arc::clone(&key), expires));
        let waiting = Waiting {
            version,
            predicted,
            expires,
        };
        // The same id again: the later prediction is the one joined.
        self.waiting.insert(key, waiting);
    }

    /// Drops what waited past its TTL.
    pub(super) fn expire(&mut self, now: Instant, evicted: &mut dyn FnMut(Eviction)) {
        while self
            .order
            .front()
            .is_some_and(|(_, expires)| *expires <= now)
        {
            let Some((key, expires)) = self.order.pop_front() else {
                break;
            };
            let key = key.as_ref();
            if self.waiting.get(key).is_some_and(|w| w.expires == expires) {
                self.waiting.remove(key);
                evicted(Eviction::Expired);
            }
        }
    }

    pub(super) fn get(&self, key: &Key, now: Instant) -> Option<&Waiting<V>> {
        self.waiting.get(key).filter(|w| w.expires > now)
    }

    pub(super) fn remove(&mut self, key: &Key) -> Option<Waiting<V>> {
        self.waiting.remove(key)
    }

    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_error_is_the_metric_over_the_last_rows() {
        let mut mae = LiveError::new(Metric::Mae, None, 3).expect("mae is live");
        assert_eq!(mae.figure(), None);
        for (p, t) in [(10.0, 0.0), (1.0, 2.0), (2.0, 4.0), (5.0, 8.0)] {
            mae.push(&[p], t);
        }
        // The first row has left the window of 3.
        let figure = mae.figure().expect("a figure");
        assert_eq!((figure.metric, figure.count), ("mae", 3));
        assert!((figure.value - 2.0).abs() < 1e-12, "{figure:?}");

        let mut rmse = LiveError::new(Metric::Rmse, None, 10).expect("rmse is live");
        rmse.push(&[3.0], 0.0);
        rmse.push(&[0.0], 4.0);
        let value = rmse.figure().expect("a figure").value;
        assert!((value - 12.5f64.sqrt()).abs() < 1e-12);
        // ROC AUC ranks rows; a regressor has no log loss.
        assert!(LiveError::new(Metric::RocAuc, Some(2), 10).is_none());
        assert!(LiveError::new(Metric::LogLoss, None, 10).is_none());
    }

    #[test]
    fn a_classifiers_live_error_scores_its_label_and_probabilities() {
        // Rows: the label's class position, then each class's probability.
        let rows: [(&[f64], f64); 2] = [(&[1.0, 0.2, 0.8], 1.0), (&[0.0, 0.6, 0.4], 1.0)];
        let figure = |metric| {
            let mut live = LiveError::new(metric, Some(2), 10).expect("live");
            for (row, target) in rows {
                live.push(row, target);
            }
            live.figure().expect("a figure").value
        };
        assert!((figure(Metric::Accuracy) - 0.5).abs() < 1e-12);
        let log_loss = (-(0.8f64.ln()) - 0.4f64.ln()) / 2.0;
        assert!((figure(Metric::LogLoss) - log_loss).abs() < 1e-12);
        // Halved for two classes, as scikit-learn's brier_score_loss.
        let brier = ((0.04 + 0.04) / 2.0 + (0.36 + 0.36) / 2.0) / 2.0;
        assert!((figure(Metric::Brier) - brier).abs() < 1e-12);
    }
}
