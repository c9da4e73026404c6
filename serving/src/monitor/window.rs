//! One feature's sliding window: each served row's bin under the reference's
//! binning, and the counts a scrape turns into PSI and rates.

use std::collections::HashMap;

use preflight_bundle::Stats;

/// A row's code: its bin, or one of these.
const NULL: u16 = u16::MAX;
/// Set on the bin of a numeric value outside the training range, or of a
/// category the model was not trained on.
const FLAGGED: u16 = 1 << 15;

/// Shares below this are taken as this in PSI, so an empty bin on either
/// side counts as a large but finite shift.
const SMOOTHING: f64 = 1e-4;

/// How a feature's values fall into bins: the reference's bins, or none.
#[derive(Debug)]
pub(super) enum Binning {
    /// Quantile bins of the training data. A value below the first edge
    /// counts in the first bin, above the last in the last, and is flagged
    /// out of range.
    Numeric { edges: Vec<f64>, expected: Vec<f64> },
    /// The training categories, and one bin for the others, which are
    /// flagged unknown.
    Categorical {
        index: HashMap<String, u16>,
        expected: Vec<f64>,
    },
    /// No reference: nulls and rows are counted, nothing else.
    Unbinned,
}

impl Binning {
    /// The reference's binning of `feature`, where it has statistics.
    pub(super) fn of(stats: Option<&Stats>) -> Self {
        match stats {
            Some(Stats::Numeric(n)) => match &n.bins {
                Some(bins) if bins.frequencies.len() < usize::from(FLAGGED) => Binning::Numeric {
                    edges: bins.edges.clone(),
                    expected: bins.frequencies.clone(),
                },
                _ => Binning::Unbinned,
            },
            Some(Stats::Categorical(c)) if c.categories.len() < usize::from(FLAGGED) - 1 => {
                let mut index = HashMap::new();
                let mut expected = Vec::new();
                for (i, (name, share)) in c.categories.iter().enumerate() {
                    index.insert(name.clone(), i as u16);
                    expected.push(*share);
                }
                // The others: none in training.
                expected.push(0.0);
                Binning::Categorical { index, expected }
            }
            _ => Binning::Unbinned,
        }
    }

    fn bins(&self) -> usize {
        match self {
            Binning::Numeric { expected, .. } | Binning::Categorical { expected, .. } => {
                expected.len()
            }
            Binning::Unbinned => 0,
        }
    }

    fn numeric(&self, x: f64) -> u16 {
        if x.is_nan() {
            return NULL;
        }
        match self {
            Binning::Numeric { edges, .. } => {
                let last = edges.len().saturating_sub(2);
                if x < edges[0] {
                    FLAGGED
                } else if x > edges[edges.len() - 1] {
                    last as u16 | FLAGGED
                } else {
                    // Bin i is [edges[i], edges[i+1]), the last one closed.
                    let i = edges.partition_point(|e| *e <= x).saturating_sub(1);
                    i.min(last) as u16
                }
            }
            _ => 0,
        }
    }

    fn category(&self, text: &str) -> u16 {
        match self {
            Binning::Categorical { index, expected } => match index.get(text) {
                Some(i) => *i,
                None => (expected.len() - 1) as u16 | FLAGGED,
            },
            _ => 0,
        }
    }
}

/// A value as the window reads it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Observed<'a> {
    Number(f64),
    Text(&'a str),
}

/// The last `capacity` rows of one feature.
#[derive(Debug)]
pub(super) struct Window {
    pub(super) binning: Binning,
    codes: Vec<u16>,
    /// Where the next row goes, once the window is full.
    next: usize,
    capacity: usize,
    counts: Vec<u32>,
    nulls: u32,
    flagged: u32,
}

/// What a window shows.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct Drift {
    /// Population stability index of the window against the reference;
    /// `None` without a reference or before any non-null row.
    pub psi: Option<f64>,
    pub null_rate: f64,
    /// Numeric features: none.
    pub unknown_category_rate: f64,
    /// Categorical features: none.
    pub out_of_range_rate: f64,
}

impl Window {
    pub(super) fn new(binning: Binning, capacity: usize) -> Self {
        let bins = binning.bins();
        Self {
            binning,
            codes: Vec::with_capacity(capacity.min(4096)),
            next: 0,
            capacity: capacity.max(1),
            counts: vec![0; bins],
            nulls: 0,
            flagged: 0,
        }
    }

    pub(super) fn rows(&self) -> usize {
        self.codes.len()
    }

    pub(super) fn push(&mut self, value: Observed<'_>) {
        let code = match value {
            Observed::Number(x) => self.binning.numeric(x),
            Observed::Text(t) => self.binning.category(t),
        };
        if self.codes.len() < self.capacity {
            self.codes.push(code);
        } else {
            let old = std::mem::replace(&mut self.codes[self.next], code);
            self.next = (self.next + 1) % self.capacity;
            self.count(old, false);
        }
        self.count(code, true);
    }

    fn count(&mut self, code: u16, add: bool) {
        let change = |n: &mut u32| {
            *n = if add {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            }
        };
        if code == NULL {
            change(&mut self.nulls);
            return;
        }
        if code & FLAGGED != 0 {
            change(&mut self.flagged);
        }
        if let Some(n) = self.counts.get_mut(usize::from(code & !FLAGGED)) {
            change(n);
        }
    }

    pub(super) fn drift(&self) -> Drift {
        let rows = self.codes.len().max(1) as f64;
        let flagged = f64::from(self.flagged) / rows;
        let (unknown_category_rate, out_of_range_rate) = match self.binning {
            Binning::Categorical { .. } => (flagged, 0.0),
            _ => (0.0, flagged),
        };
        Drift {
            psi: self.psi(),
            null_rate: f64::from(self.nulls) / rows,
            unknown_category_rate,
            out_of_range_rate,
        }
    }

    fn psi(&self) -> Option<f64> {
        let expected = match &self.binning {
            Binning::Numeric { expected, .. } | Binning::Categorical { expected, .. } => expected,
            Binning::Unbinned => return None,
        };
        let total: u32 = self.counts.iter().sum();
        if total == 0 {
            return None;
        }
        Some(psi(
            expected,
            self.counts.iter().map(|&n| f64::from(n) / f64::from(total)),
        ))
    }
}

/// Σ (actual − expected) · ln(actual / expected) over the bins, each share
/// at least [`SMOOTHING`].
pub(super) fn psi(expected: &[f64], actual: impl Iterator<Item = f64>) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(&e, a)| {
            let (e, a) = (e.max(SMOOTHING), a.max(SMOOTHING));
            (a - e) * (a / e).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric() -> Binning {
        Binning::Numeric {
            edges: vec![0.0, 1.0, 2.0, 3.0, 4.0],
            expected: vec![0.25; 4],
        }
    }

    #[test]
    fn a_window_like_the_reference_has_no_drift_and_a_shifted_one_has() {
        let mut w = Window::new(numeric(), 400);
        for i in 0..400 {
            w.push(Observed::Number(f64::from(i % 4) + 0.5));
        }
        let d = w.drift();
        assert!(d.psi.is_some_and(|p| p.abs() < 1e-12), "{d:?}");
        assert_eq!((d.null_rate, d.out_of_range_rate), (0.0, 0.0));

        // The window slides: 400 rows all in the last bin, or beyond it.
        for i in 0..400 {
            let x = if i % 2 == 0 { 3.5 } else { 9.0 };
            w.push(Observed::Number(x));
        }
        let d = w.drift();
        assert_eq!(w.rows(), 400);
        assert!(d.psi.is_some_and(|p| p > 2.0), "{d:?}");
        assert!((d.out_of_range_rate - 0.5).abs() < 1e-12, "{d:?}");

        // Nulls are a rate of their own and leave the bins alone.
        let mut w = Window::new(numeric(), 10);
        w.push(Observed::Number(f64::NAN));
        w.push(Observed::Number(0.5));
        let d = w.drift();
        assert!((d.null_rate - 0.5).abs() < 1e-12);
        assert!(d.psi.is_some());
    }

    #[test]
    fn an_unknown_category_is_counted_and_drifts() {
        let binning = Binning::Categorical {
            index: [("car".to_owned(), 0), ("bike".to_owned(), 1)].into(),
            expected: vec![0.5, 0.5, 0.0],
        };
        let mut w = Window::new(binning, 100);
        for i in 0..100 {
            w.push(Observed::Text(if i % 4 == 0 { "drone" } else { "car" }));
        }
        let d = w.drift();
        assert!((d.unknown_category_rate - 0.25).abs() < 1e-12, "{d:?}");
        assert_eq!(d.out_of_range_rate, 0.0);
        assert!(d.psi.is_some_and(|p| p > 1.0), "{d:?}");
    }
}
