//! Percentiles with their confidence intervals, and the paired comparison of
//! a candidate with its last release.
//!
//! Everything here is distribution-free: request latencies have long,
//! irregular tails, so no normal approximation of the latencies themselves
//! is made. Intervals are 95 %.

/// The standard normal quantile of a two-sided 95 % interval.
pub(crate) const Z95: f64 = 1.959_964;
/// The standard normal quantile of a two-sided 99.9 % interval: the level at
/// which a fleet's tail comparisons are decided (`docs/harness.md`).
pub(crate) const Z999: f64 = 3.290_527;

/// A figure with its 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Estimate {
    pub(crate) value: f64,
    pub(crate) low: f64,
    pub(crate) high: f64,
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} [{:.2}, {:.2}]", self.value, self.low, self.high)
    }
}

/// Requests a q-quantile needs so that its 95 % interval spans at most
/// `±precision` in quantile terms (`0.01` around p99: from p98 up). From the
/// normal approximation of the binomial count of samples below the quantile:
/// `n = z² q (1 − q) / precision²`.
pub(crate) fn requests_for(q: f64, precision: f64) -> u64 {
    (Z95 * Z95 * q * (1.0 - q) / (precision * precision)).ceil() as u64
}

/// The q-quantile of sorted samples by nearest rank.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n => sorted[rank(n, q)],
    }
}

/// The 0-based nearest rank of the q-quantile among `n` samples.
fn rank(n: usize, q: f64) -> usize {
    ((q * n as f64).ceil() as usize).clamp(1, n) - 1
}

/// The q-quantile of sorted samples with its distribution-free 95 % interval:
/// the order statistics at ranks `n q ± z √(n q (1 − q))`. Where the sample
/// is too small for the interval to close, an end is the smallest or largest
/// sample, and so wider than 95 %, never narrower.
pub(crate) fn quantile_interval(sorted: &[f64], q: f64) -> Estimate {
    quantile_interval_at(sorted, q, Z95)
}

/// As `quantile_interval`, at the confidence of the normal quantile `z`.
pub(crate) fn quantile_interval_at(sorted: &[f64], q: f64, z: f64) -> Estimate {
    let n = sorted.len();
    if n == 0 {
        return Estimate {
            value: f64::NAN,
            low: f64::NAN,
            high: f64::NAN,
        };
    }
    let centre = n as f64 * q;
    let spread = z * (centre * (1.0 - q)).sqrt();
    let low = ((centre - spread).floor() as usize).clamp(1, n) - 1;
    let high = ((centre + spread).ceil() as usize + 1).clamp(1, n) - 1;
    Estimate {
        value: quantile(sorted, q),
        low: sorted[low],
        high: sorted[high],
    }
}

/// Bounds of the ratio candidate / baseline of the q-quantile from each
/// sample's own distribution-free interval, unpaired: the ratio of the
/// candidate's lower bound to the baseline's upper bound, and the other way
/// round. Wider than the paired bootstrap, and exact where the bootstrap of a
/// tail quantile from a few hundred samples is too narrow.
pub(crate) fn ratio_bounds(
    candidate_sorted: &[f64],
    baseline_sorted: &[f64],
    q: f64,
    z: f64,
) -> Estimate {
    let (c, b) = (
        quantile_interval_at(candidate_sorted, q, z),
        quantile_interval_at(baseline_sorted, q, z),
    );
    Estimate {
        value: c.value / b.value,
        low: c.low / b.high,
        high: c.high / b.low,
    }
}

/// The ratio candidate / baseline of the q-quantile, for each of `quantiles`,
/// with a paired bootstrap 95 % interval (percentile method).
///
/// `candidate[i]` and `baseline[i]` were sent back to back, so a burst of
/// machine noise lands on both; resampling whole pairs keeps that shared part
/// in every resample, which is what makes the interval narrow enough to judge
/// a tail percentile on a busy machine.
pub(crate) fn paired_ratios(
    candidate: &[f64],
    baseline: &[f64],
    quantiles: &[f64],
    resamples: usize,
    seed: u64,
) -> Vec<Estimate> {
    let n = candidate.len().min(baseline.len());
    let (mut sorted_c, mut sorted_b) = (candidate[..n].to_vec(), baseline[..n].to_vec());
    sorted_c.sort_by(f64::total_cmp);
    sorted_b.sort_by(f64::total_cmp);
    let point = |q: f64| quantile(&sorted_c, q) / quantile(&sorted_b, q);
    if n == 0 {
        return quantiles
            .iter()
            .map(|_| Estimate {
                value: f64::NAN,
                low: f64::NAN,
                high: f64::NAN,
            })
            .collect();
    }
    let mut rng = SplitMix64(seed);
    let mut ratios = vec![Vec::with_capacity(resamples); quantiles.len()];
    let (mut c, mut b) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..resamples {
        for slot in 0..n {
            let i = rng.below(n);
            c[slot] = candidate[i];
            b[slot] = baseline[i];
        }
        for (k, q) in quantiles.iter().enumerate() {
            let r = rank(n, *q);
            let (_, cq, _) = c.select_nth_unstable_by(r, f64::total_cmp);
            let cq = *cq;
            let (_, bq, _) = b.select_nth_unstable_by(r, f64::total_cmp);
            ratios[k].push(cq / *bq);
        }
    }
    quantiles
        .iter()
        .zip(ratios)
        .map(|(q, mut r)| {
            r.sort_by(f64::total_cmp);
            Estimate {
                value: point(*q),
                low: quantile(&r, 0.025),
                high: quantile(&r, 0.975),
            }
        })
        .collect()
}

/// Where an interval lies against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Against {
    /// The whole interval is at or below the limit.
    Within,
    /// The whole interval is above the limit.
    Beyond,
    /// The interval straddles the limit: more samples would tell.
    Inconclusive,
}

impl Estimate {
    /// The interval a comparison with the last release is judged on, from
    /// the paired bootstrap (`self`) and the unpaired order statistics
    /// (`unpaired`): the lower end is the lower of the two, so a regression
    /// fails only when both methods put it beyond the limit; the upper end is
    /// the bootstrap's, so a comparison passes when the pairs, which share the
    /// machine's noise, put it within (`docs/harness.md`, "Judging").
    pub(crate) fn judged_with(self, unpaired: Estimate) -> Estimate {
        Estimate {
            value: self.value,
            low: self.low.min(unpaired.low),
            high: self.high,
        }
    }

    /// Whether more samples could plausibly settle an interval that straddles
    /// `limit`: its half on the limit's side, narrowed by `shrink` (the
    /// interval narrows as one over the square root of the samples), would
    /// no longer reach the limit.
    pub(crate) fn could_settle(&self, limit: f64, shrink: f64) -> bool {
        if self.value > limit {
            self.value - (self.value - self.low) * shrink > limit
        } else {
            self.value + (self.high - self.value) * shrink <= limit
        }
    }
}

impl Against {
    pub(crate) fn judge(estimate: Estimate, limit: f64) -> Self {
        if estimate.high <= limit {
            Against::Within
        } else if estimate.low > limit {
            Against::Beyond
        } else {
            Against::Inconclusive
        }
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of a counter.
pub(crate) fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small, seeded generator for resampling: the same run resamples the
/// same way, so a report can be reproduced from its samples.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2⁻³²
    /// for the sample sizes used here).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_gives_a_few_hundred_requests_for_p99() {
        assert_eq!(requests_for(0.99, 0.01), 381);
        assert_eq!(requests_for(0.99, 0.0113), 298);
        // p50 needs far fewer for the same precision... and more for a finer one.
        assert!(requests_for(0.5, 0.05) < 400);
    }

    #[test]
    fn quantile_interval_brackets_the_quantile() {
        let sorted: Vec<f64> = (1..=1000).map(f64::from).collect();
        let p99 = quantile_interval(&sorted, 0.99);
        assert_eq!(p99.value, 990.0);
        // Ranks 990 ± 1.96·√9.9 ≈ 990 ± 6.2.
        assert_eq!((p99.low, p99.high), (983.0, 998.0));
        let p50 = quantile_interval(&sorted, 0.5);
        assert_eq!(p50.value, 500.0);
        assert!(p50.low >= 468.0 && p50.high <= 533.0, "{p50}");
    }

    #[test]
    fn small_samples_widen_to_the_extremes() {
        let sorted = [1.0, 2.0, 3.0];
        let p99 = quantile_interval(&sorted, 0.99);
        assert_eq!((p99.value, p99.low, p99.high), (3.0, 2.0, 3.0));
    }

    /// Latencies with a shared noise term per pair: the paired interval of
    /// the ratio must cover the true ratio and exclude 1 when the candidate
    /// is 1.5× slower.
    #[test]
    fn paired_ratio_sees_through_shared_noise() {
        let mut rng = SplitMix64(7);
        let (mut candidate, mut baseline) = (Vec::new(), Vec::new());
        for _ in 0..500 {
            let noise = if rng.below(50) == 0 {
                20.0
            } else {
                (rng.below(1000) as f64) / 1000.0
            };
            baseline.push(1.0 + noise);
            candidate.push(1.5 + noise * 1.5);
        }
        let ratios = paired_ratios(&candidate, &baseline, &[0.5, 0.99], 1000, 1);
        assert_eq!(ratios.len(), 2);
        for r in ratios {
            assert!(r.low > 1.3 && r.low <= 1.5 && r.high >= 1.5, "{r}");
        }
        let same = paired_ratios(&baseline, &baseline, &[0.99], 200, 1)[0];
        assert_eq!((same.value, same.low, same.high), (1.0, 1.0, 1.0));
    }

    #[test]
    fn unpaired_bounds_of_a_ratio() {
        let candidate: Vec<f64> = (1..=1000).map(|x| f64::from(x) * 2.0).collect();
        let baseline: Vec<f64> = (1..=1000).map(f64::from).collect();
        let r = ratio_bounds(&candidate, &baseline, 0.99, Z95);
        assert_eq!(r.value, 2.0);
        assert!(
            r.low < 2.0 && r.low > 1.9 && r.high > 2.0 && r.high < 2.1,
            "{r}"
        );
        let paired = Estimate {
            value: 2.0,
            low: 1.99,
            high: 2.02,
        };
        // Failing needs both lower ends beyond a limit; passing, the
        // bootstrap's upper end within it.
        let judged = paired.judged_with(r);
        assert_eq!((judged.value, judged.low, judged.high), (2.0, r.low, 2.02));
    }

    #[test]
    fn judging_an_interval() {
        let e = |low, high| Estimate {
            value: (low + high) / 2.0,
            low,
            high,
        };
        assert_eq!(Against::judge(e(0.9, 1.1), 1.2), Against::Within);
        assert_eq!(Against::judge(e(1.3, 1.6), 1.2), Against::Beyond);
        assert_eq!(Against::judge(e(1.1, 1.3), 1.2), Against::Inconclusive);
        // Twice the samples narrow an interval to 71%: [1.1, 1.3] around 1.2
        // cannot leave 1.2, but [1.0, 1.22] around 1.11 can fall below it.
        assert!(!e(1.1, 1.3).could_settle(1.2, 0.71));
        assert!(e(1.0, 1.22).could_settle(1.2, 0.71));
        assert!(!e(0.8, 1.4).could_settle(1.2, 0.71));
    }
}
