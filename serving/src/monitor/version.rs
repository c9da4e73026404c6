//! One model version's monitor: the sliding windows of its inputs and
//! outputs under `reference.json`, and its live error.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use preflight_bundle::{Manifest, Reference};

use super::feedback::{LiveError, LiveFigure};
use super::scored::Scoring;
use super::window::{Binning, Drift, Observed, Window};
use crate::model::{Batch, TensorData};

/// One model version's windows and live error.
#[derive(Debug)]
pub struct VersionMonitor {
    inputs: Vec<String>,
    outputs: Vec<String>,
    window: usize,
    /// What the live error and the label's drift read of an answer.
    pub(crate) scoring: Scoring,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    inputs: Vec<Window>,
    outputs: Vec<Window>,
    rows_seen: u64,
    live: Option<LiveError>,
}

/// What `GET /v2/models/{m}/versions/{v}/monitor` answers.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct MonitorReport {
    pub model_name: String,
    pub model_version: String,
    /// Rows each window holds at most.
    pub window: usize,
    /// Rows in the window now.
    pub rows: usize,
    /// Rows observed since the version was loaded.
    pub rows_seen: u64,
    pub inputs: BTreeMap<String, Drift>,
    pub outputs: BTreeMap<String, OutputDrift>,
    /// The contract's quality metric over the last rows that got feedback.
    pub live_error: Option<LiveFigure>,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct OutputDrift {
    pub psi: Option<f64>,
}

impl VersionMonitor {
    /// The windows of `manifest`'s features, binned as `reference` has them.
    pub(crate) fn new(manifest: &Manifest, reference: Option<&Reference>, window: usize) -> Self {
        let windows = |features: &[preflight_bundle::Feature], stats: Option<&BTreeMap<_, _>>| {
            features
                .iter()
                .map(|f| Window::new(Binning::of(stats.and_then(|s| s.get(&f.name))), window))
                .collect()
        };
        let names = |features: &[preflight_bundle::Feature]| {
            features.iter().map(|f| f.name.clone()).collect()
        };
        let metric = manifest.contract.primary_quality().map(|q| q.metric);
        let scoring = Scoring::of(manifest);
        let k = manifest.classifier().map(|c| c.k());
        Self {
            inputs: names(&manifest.inputs),
            outputs: names(&manifest.outputs),
            window,
            scoring,
            state: Mutex::new(State {
                inputs: windows(&manifest.inputs, reference.map(|r| &r.inputs)),
                outputs: windows(&manifest.outputs, reference.map(|r| &r.outputs)),
                rows_seen: 0,
                live: metric.and_then(|m| LiveError::new(m, k, window)),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn observe(&self, batch: &Batch, outputs: &[Vec<f64>]) {
        let mut state = self.state();
        for (window, column) in state.inputs.iter_mut().zip(&batch.columns) {
            for row in 0..batch.rows {
                window.push(observed(column, row));
            }
        }
        for (index, (window, values)) in state.outputs.iter_mut().zip(outputs).enumerate() {
            // A classifier's probabilities have no window: its classes' shares
            // are the label's.
            if self.scoring.is_probabilities(index) {
                continue;
            }
            for &value in values {
                window.push(match self.scoring.class_name(index, value) {
                    Some(class) => Observed::Text(class),
                    None => Observed::Number(value),
                });
            }
        }
        state.rows_seen += batch.rows as u64;
    }

    /// Joins each scored row (`Scoring::rows`) with its target.
    pub(super) fn join(&self, predicted: &[f64], targets: &[f64]) {
        let mut state = self.state();
        let width = self.scoring.width();
        if let Some(live) = &mut state.live {
            for (row, &t) in predicted.chunks(width).zip(targets) {
                live.push(row, t);
            }
        }
    }

    pub(crate) fn report(&self, model: &str, version: u64) -> MonitorReport {
        let state = self.state();
        MonitorReport {
            model_name: model.to_owned(),
            model_version: version.to_string(),
            window: self.window,
            rows: state.inputs.first().map_or(0, Window::rows),
            rows_seen: state.rows_seen,
            inputs: self
                .inputs
                .iter()
                .cloned()
                .zip(state.inputs.iter().map(Window::drift))
                .collect(),
            outputs: self
                .outputs
                .iter()
                .cloned()
                .zip(
                    state
                        .outputs
                        .iter()
                        .map(|w| OutputDrift { psi: w.drift().psi }),
                )
                .collect(),
            live_error: state.live.as_ref().and_then(LiveError::figure),
        }
    }
}

/// Row `row` of a column, as a window reads it: text as a category, every
/// other value as a number (NaN is a null).
fn observed(column: &TensorData, row: usize) -> Observed<'_> {
    match column {
        TensorData::F32(v) => Observed::Number(f64::from(v[row])),
        TensorData::F64(v) => Observed::Number(v[row]),
        TensorData::I64(v) => Observed::Number(v[row] as f64),
        TensorData::I32(v) => Observed::Number(f64::from(v[row])),
        TensorData::Bool(v) => Observed::Number(f64::from(u8::from(v[row]))),
        TensorData::Text(v) => Observed::Text(&v[row]),
    }
}
