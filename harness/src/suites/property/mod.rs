//! `property`: generated rows from the input schema (bounds, categories,
//! nulls, edge values) and from `reference.json` where there are no bounds.
//! Every valid batch is answered 200 with finite outputs in the declared
//! range, twice the same; a row in a batch answers as it does alone; declared
//! monotonic inputs hold; invalid rows get a 4xx, never a 5xx. A failure is
//! shrunk to a minimal case and reported with a ready-to-paste `curl`.

mod invalid;
mod monotonic;
mod strategy;
mod valid;

use preflight_bundle::{Manifest, Tolerance, Value};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use self::invalid::invalid_rows;
use self::monotonic::monotonic_check;
use self::strategy::row_strategy;
use self::valid::{classified, large_batch, valid_batches};
use super::descriptor::Descriptor;
use super::{ModelUnderTest, Suite};
use crate::client::{Answer, Client, FallbackReason};
use crate::report::{Check, SuiteReport};

/// What the rest of the harness knows of the suite (`Suite::descriptor`).
pub(super) const DESCRIPTOR: Descriptor = Descriptor::FUNCTIONAL;

/// Generated cases per property; the runner's seed is fixed, so a run repeats.
const CASES: u32 = 32;
/// Cases of the large-batch property: one, because a case is thousands of
/// generated rows and a failure is a property of the batch's size.
const LARGE_CASES: u32 = 1;
/// Rows of the one large batch.
const LARGE_BATCH: usize = 2000;
/// Two answers to the same request go through the same arithmetic.
const SAME: Tolerance = Tolerance {
    abs: 0.0,
    rel: 1e-6,
};

pub(super) async fn run(model: &ModelUnderTest) -> SuiteReport {
    let manifest = model.bundle.manifest().clone();
    let reference = model.bundle.reference().ok().flatten();
    let row = row_strategy(&manifest, reference.as_ref());
    let client = model.client.clone();
    let handle = tokio::runtime::Handle::current();
    // proptest drives a blocking closure; each case blocks on its HTTP calls.
    tokio::task::block_in_place(move || {
        let endpoint = Endpoint {
            manifest: &manifest,
            client: &client,
            handle: &handle,
        };
        let mut checks = valid_batches(&endpoint, &row);
        checks.extend(classified(&endpoint, &row));
        checks.push(large_batch(&endpoint, &row));
        for monotonic in &manifest.contract.monotonic {
            checks.extend(monotonic_check(
                &endpoint,
                &row,
                monotonic,
                reference.as_ref(),
            ));
        }
        checks.push(invalid_rows(&endpoint, row));
        SuiteReport::new(Suite::Property.name(), checks)
    })
}

/// What every property sends its cases to, from proptest's blocking closures.
struct Endpoint<'a> {
    manifest: &'a Manifest,
    client: &'a Client,
    handle: &'a tokio::runtime::Handle,
}

impl Endpoint<'_> {
    /// Sends `rows` as one batch.
    fn call(&self, rows: &[Vec<Value>]) -> Result<Answer, TestCaseError> {
        let borrowed: Vec<&[Value]> = rows.iter().map(Vec::as_slice).collect();
        self.handle
            .block_on(self.client.infer(self.manifest, &borrowed, None))
            .map_err(|e| TestCaseError::fail(e.to_string()))
    }

    /// A property of this endpoint's model: its check.
    fn property<S: Strategy>(
        &self,
        name: &str,
        cases: u32,
        strategy: S,
        test: impl Fn(&S::Value) -> Result<(), TestCaseError>,
    ) -> Check
    where
        S::Value: Curl,
    {
        property(name, cases, self.manifest, self.client, strategy, test)
    }
}

/// Whether two answers came from different models because one of them ran
/// out of time: the fallback answered on `deadline`, which depends on how busy
/// the machine is, so their outputs say nothing about determinism. A fallback
/// on `error` is no such excuse: it answers the same request the same way.
fn by_the_clock(a: &Answer, b: &Answer) -> bool {
    let deadline = |x: &Answer| x.fallback == Some(FallbackReason::Deadline);
    a.fallback != b.fallback && (deadline(a) || deadline(b))
}

/// ` (fallback: deadline)` where the fallback answered.
fn fallback_note(answer: &Answer) -> String {
    answer
        .fallback
        .as_ref()
        .map(|r| format!(" (fallback: {r})"))
        .unwrap_or_default()
}

/// Two answers are the same within `tolerance`; a value that is no number
/// in both (a label that names no class) is the same answer twice.
fn within(a: &[Vec<f64>], b: &[Vec<f64>], tolerance: Tolerance) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| tolerance.accepts(*p, *q) || (p.is_nan() && q.is_nan()))
        })
}

/// Runs one property; a failure becomes a check with the minimal case and a curl.
fn property<S: Strategy>(
    name: &str,
    cases: u32,
    manifest: &Manifest,
    client: &Client,
    strategy: S,
    test: impl Fn(&S::Value) -> Result<(), TestCaseError>,
) -> Check
where
    S::Value: Curl,
{
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    match runner.run(&strategy, |value| test(&value)) {
        Ok(()) => Check::new(name, true, format!("{cases} generated cases")),
        Err(TestError::Fail(reason, minimal)) => Check::new(
            name,
            false,
            format!("{reason}; minimal case: {}", minimal.curl(manifest, client)),
        ),
        Err(TestError::Abort(reason)) => Check::new(name, false, format!("aborted: {reason}")),
    }
}

/// A ready-to-paste command that sends a failing case.
trait Curl {
    fn curl(&self, manifest: &Manifest, client: &Client) -> String;
}

impl Curl for Vec<Vec<Value>> {
    fn curl(&self, manifest: &Manifest, client: &Client) -> String {
        let rows: Vec<&[Value]> = self.iter().map(Vec::as_slice).collect();
        client.command_for(manifest, &manifest.infer_request(&rows))
    }
}

impl Curl for (serde_json::Value, String) {
    fn curl(&self, manifest: &Manifest, client: &Client) -> String {
        client.command_for(manifest, &self.0)
    }
}
