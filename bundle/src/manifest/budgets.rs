//! The rules of the manifest's `[contract]`: each budget's own, and those
//! that read the inputs or the task.

use toml::Spanned;

use super::raw::RawContract;
use super::validate::Validator;
use super::{Feature, ModelInfo};
use crate::contract::{Contract, LatencyBudget, Monotonic, QualityBudget, SizeBudget, Tolerance};
use crate::error::Error;

impl Validator<'_> {
    pub(super) fn contract(
        &self,
        raw: Spanned<RawContract>,
        inputs: &[Feature],
        model: &ModelInfo,
    ) -> Result<Contract, Error> {
        let task = model.task;
        let classes = model.classes.as_deref();
        let raw = raw.into_inner();
        if let Some(parity) = &raw.parity {
            self.check_parity(parity)?;
        }
        if let Some(latency) = &raw.latency {
            self.check_latency(latency)?;
        }
        if let Some(size) = &raw.size {
            self.check_size(size)?;
        }
        let quality = match raw.quality {
            Some(q) => {
                let span = q.span();
                let list = q.into_inner().into_vec();
                let one = list.len() == 1;
                for (i, budget) in list.iter().enumerate() {
                    let key = if one {
                        "contract.quality".to_owned()
                    } else {
                        format!("contract.quality[{i}]")
                    };
                    let spanned = Spanned::new(span.clone(), budget.clone());
                    self.check_quality(&key, &spanned, task)?;
                }
                list
            }
            None => Vec::new(),
        };
        if let Some(fallback) = &raw.fallback {
            self.check_quality("contract.fallback", fallback, task)?;
        }
        for (i, monotonic) in raw.monotonic.iter().enumerate() {
            self.check_monotonic(i, monotonic, inputs, classes)?;
        }
        Ok(Contract {
            parity: raw.parity.map(Spanned::into_inner),
            latency: raw.latency.map(Spanned::into_inner),
            size: raw.size.map(Spanned::into_inner),
            quality,
            fallback: raw.fallback.map(Spanned::into_inner),
            monotonic: raw.monotonic.into_iter().map(Spanned::into_inner).collect(),
            breaking: raw.breaking,
        })
    }

    fn check_parity(&self, p: &Spanned<Tolerance>) -> Result<(), Error> {
        let t = p.get_ref();
        if !(non_negative(t.abs) && non_negative(t.rel)) {
            return Err(self.error(
                p,
                "contract.parity",
                "abs and rel must be finite and not negative",
            ));
        }
        Ok(())
    }

    fn check_latency(&self, l: &Spanned<LatencyBudget>) -> Result<(), Error> {
        let b = l.get_ref();
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !(positive(b.p50_ms) && positive(b.p99_ms) && positive(b.rate_per_s) && b.requests > 0) {
            return Err(self.error(
                l,
                "contract.latency",
                "p50_ms, p99_ms, rate_per_s and requests must be positive",
            ));
        }
        if b.p50_ms > b.p99_ms {
            return Err(self.error(
                l,
                "contract.latency.p99_ms",
                format!("{} is below p50_ms {}", b.p99_ms, b.p50_ms),
            ));
        }
        for (key, limit) in [
            ("max_p99_regression", b.max_p99_regression),
            ("max_p50_regression", b.max_p50_regression),
        ] {
            if limit.is_some_and(|r| !non_negative(r)) {
                return Err(self.error(
                    l,
                    format!("contract.latency.{key}"),
                    "must not be negative",
                ));
            }
        }
        if b.max_fallback_rate
            .is_some_and(|r| !(non_negative(r) && r <= 1.0))
        {
            return Err(self.error(
                l,
                "contract.latency.max_fallback_rate",
                "must be a share between 0 and 1",
            ));
        }
        Ok(())
    }

    fn check_size(&self, s: &Spanned<SizeBudget>) -> Result<(), Error> {
        let b = s.get_ref();
        if b.max_model_bytes.is_none() && b.max_memory_bytes.is_none() && b.max_growth.is_none() {
            return Err(self.error(
                s,
                "contract.size",
                "give max_model_bytes, max_memory_bytes or max_growth",
            ));
        }
        if b.max_growth.is_some_and(|g| !non_negative(g)) {
            return Err(self.error(s, "contract.size.max_growth", "must not be negative"));
        }
        Ok(())
    }

    /// A `[contract.quality]` or `[contract.fallback]` table, at `key`.
    fn check_quality(
        &self,
        key: &str,
        q: &Spanned<QualityBudget>,
        task: crate::Task,
    ) -> Result<(), Error> {
        let b = q.get_ref();
        let fits_task = match task {
            crate::Task::Regression => b.metric.for_regression(),
            crate::Task::Classification => !b.metric.for_regression(),
        };
        if !fits_task {
            return Err(self.error(
                q,
                format!("{key}.metric"),
                format!("'{}' does not apply to a {task:?} model", b.metric.as_str())
                    .to_lowercase(),
            ));
        }
        let (wanted, other, unwanted) = if b.metric.higher_is_better() {
            ("min", "max", b.max)
        } else {
            ("max", "min", b.min)
        };
        if unwanted.is_some() {
            return Err(self.error(
                q,
                format!("{key}.{other}"),
                format!(
                    "'{}' is bounded by {wanted}, not {other}",
                    b.metric.as_str()
                ),
            ));
        }
        if b.max_regression.is_some_and(|r| !non_negative(r)) {
            return Err(self.error(q, format!("{key}.max_regression"), "must not be negative"));
        }
        Ok(())
    }

    fn check_monotonic(
        &self,
        i: usize,
        m: &Spanned<Monotonic>,
        inputs: &[Feature],
        classes: Option<&[crate::Class]>,
    ) -> Result<(), Error> {
        let name = &m.get_ref().input;
        let problem = match inputs.iter().find(|f| &f.name == name) {
            None => format!("'{name}' is not an input of the model"),
            Some(f) if !f.datatype.is_numeric() => {
                format!("'{name}' is {}, not numeric", f.datatype)
            }
            Some(_) => return self.check_monotonic_class(i, m, classes),
        };
        Err(self.error(m, format!("contract.monotonic[{i}].input"), problem))
    }

    /// A classifier's constraint names the class whose probability it
    /// holds, one of its classes; a regressor's names none.
    fn check_monotonic_class(
        &self,
        i: usize,
        m: &Spanned<Monotonic>,
        classes: Option<&[crate::Class]>,
    ) -> Result<(), Error> {
        let problem = match (&m.get_ref().class, classes) {
            (None, None) => return Ok(()),
            (Some(c), Some(classes)) if classes.contains(c) => return Ok(()),
            (Some(c), Some(_)) => format!("{c} is not a class of the model"),
            (Some(_), None) => "a class applies to a classifier's constraint".to_owned(),
            (None, Some(_)) => {
                "a classifier's constraint names the class whose probability it holds: \
                    class = ..."
                    .to_owned()
            }
        };
        Err(self.error(m, format!("contract.monotonic[{i}].class"), problem))
    }
}

/// False for negative numbers, NaN and infinity.
fn non_negative(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}
