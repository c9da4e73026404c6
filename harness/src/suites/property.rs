//! `property`: generated rows from the input schema (bounds, categories,
//! nulls, edge values) and from `reference.json` where there are no bounds.
//! Every valid batch is answered 200 with finite outputs in the declared
//! range, twice the same; a row in a batch answers as it does alone; declared
//! monotonic inputs hold; invalid rows get a 4xx, never a 5xx. A failure is
//! shrunk to a minimal case and reported with a ready-to-paste `curl`.

use preflight_bundle::{
    Datatype, Direction, Feature, Manifest, Monotonic, Reference, Stats, Tolerance, Value,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde_json::json;

use super::descriptor::Descriptor;
use super::{ModelUnderTest, Suite};
use crate::client::{Answer, Client, FallbackReason};
use crate::report::{Check, SuiteReport};
use crate::slots::SlotKind;

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

/// A valid batch is answered 200, in range; the same twice; and each row as
/// it would be alone: three properties, each reported with its own case.
fn valid_batches(endpoint: &Endpoint<'_>, row: &BoxedStrategy<Vec<Value>>) -> Vec<Check> {
    let batches = prop::collection::vec(row.clone(), 1..6);
    let answered = |rows: &Vec<Vec<Value>>| -> Result<Answer, TestCaseError> {
        let answer = endpoint.call(rows)?;
        if !answer.ok() {
            return Err(TestCaseError::fail(format!(
                "a valid batch was answered {}",
                answer.describe()
            )));
        }
        Ok(answer)
    };
    let in_range = endpoint.property(
        "valid rows are answered in range",
        CASES,
        batches.clone(),
        |rows| in_range(endpoint.manifest, &answered(rows)?),
    );
    let twice = endpoint.property(
        "the same request is answered the same twice",
        CASES,
        batches.clone(),
        |rows| {
            let first = answered(rows)?;
            let second = endpoint.call(rows)?;
            if !second.ok()
                || (!by_the_clock(&first, &second)
                    && !within(&first.outputs, &second.outputs, SAME))
            {
                return Err(TestCaseError::fail(format!(
                    "the same request twice gave different answers: {:?} then {:?} ({})",
                    first.outputs,
                    second.outputs,
                    second.describe()
                )));
            }
            Ok(())
        },
    );
    // A row's answer may move with its batch's size, as ONNX Runtime regroups
    // float arithmetic (a linear model's product runs another kernel for a
    // batch), but never by more than the contract calls the same answer.
    let batched = endpoint.manifest.contract.parity.unwrap_or(SAME);
    let alone = endpoint.property(
        "a row in a batch is answered as alone",
        CASES,
        batches,
        |rows| {
            let first = answered(rows)?;
            let last = rows.len() - 1;
            let alone = endpoint.call(&rows[last..])?;
            let in_batch: Vec<Vec<f64>> = first.outputs.iter().map(|c| vec![c[last]]).collect();
            if !alone.ok()
                || (!by_the_clock(&first, &alone) && !within(&alone.outputs, &in_batch, batched))
            {
                return Err(TestCaseError::fail(format!(
                    "a row in a batch of {} answered {in_batch:?}{} but alone {:?}{} ({})",
                    rows.len(),
                    fallback_note(&first),
                    alone.outputs,
                    fallback_note(&alone),
                    alone.describe()
                )));
            }
            Ok(())
        },
    );
    vec![in_range, twice, alone]
}

/// Every output is finite and within its declared bounds.
fn in_range(manifest: &Manifest, answer: &Answer) -> Result<(), TestCaseError> {
    match super::out_of_range(manifest, &answer.outputs) {
        Some(why) => Err(TestCaseError::fail(why)),
        None => Ok(()),
    }
}

/// A classifier's answers are probabilities, and its label their arg-max:
/// each row's probabilities sum to 1, and the label names the class of the
/// largest (unless the top two lie within the parity tolerance, where
/// rounding may name either). `None` for a regressor.
fn classified(endpoint: &Endpoint<'_>, row: &BoxedStrategy<Vec<Value>>) -> Option<Check> {
    let manifest = endpoint.manifest;
    manifest.classifier()?;
    let tolerance = manifest.contract.parity.unwrap_or(SAME);
    let batches = prop::collection::vec(row.clone(), 1..6);
    Some(endpoint.property(
        "probabilities sum to 1 and the label is their arg-max",
        CASES,
        batches,
        move |rows| {
            let answer = endpoint.call(rows)?;
            if !answer.ok() {
                return Err(TestCaseError::fail(format!(
                    "a valid batch was answered {}",
                    answer.describe()
                )));
            }
            for i in 0..rows.len() {
                let values = crate::slots::row(&answer.outputs, i);
                let Some(c) = crate::slots::classified(manifest, &values) else {
                    continue;
                };
                let sum: f64 = c.probabilities.iter().sum();
                if (sum - 1.0).abs() > super::PROBABILITY_SLACK {
                    return Err(TestCaseError::fail(format!(
                        "row {i}: the probabilities {:?} sum to {sum}, not 1",
                        c.probabilities
                    )));
                }
                let top = c
                    .probabilities
                    .iter()
                    .copied()
                    .fold(f64::NEG_INFINITY, f64::max);
                let near_tie = c.margin() <= tolerance.allowance(top);
                if c.arg_max().map(|k| k as f64) != Some(c.label) && !near_tie {
                    let classes = manifest.classifier().map(|c| c.classes).unwrap_or_default();
                    let named = |k: Option<usize>| {
                        k.and_then(|k| classes.get(k))
                            .map_or("no class".to_owned(), ToString::to_string)
                    };
                    return Err(TestCaseError::fail(format!(
                        "row {i}: the label is {}, but the largest probability is of {}: {:?}",
                        named(c.label.is_finite().then_some(c.label as usize)),
                        named(c.arg_max()),
                        c.probabilities
                    )));
                }
            }
            Ok(())
        },
    ))
}

fn large_batch(endpoint: &Endpoint<'_>, row: &BoxedStrategy<Vec<Value>>) -> Check {
    let large = prop::collection::vec(row.clone(), LARGE_BATCH..=LARGE_BATCH);
    let name = format!("a batch of {LARGE_BATCH} rows is answered");
    endpoint.property(&name, LARGE_CASES, large, |rows| {
        let answer = endpoint.call(rows)?;
        if answer.ok() {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "a batch of {} valid rows was answered {}",
                rows.len(),
                answer.describe()
            )))
        }
    })
}

/// `contract.monotonic`: two rows that differ only in the input, in order;
/// `None` when the input is not one of the model's.
fn monotonic_check(
    endpoint: &Endpoint<'_>,
    row: &BoxedStrategy<Vec<Value>>,
    monotonic: &Monotonic,
    reference: Option<&Reference>,
) -> Option<Check> {
    let (index, feature) = endpoint.manifest.input(&monotonic.input)?;
    // A classifier's constraint is on the probability of the class it names.
    let slot = match (&monotonic.class, endpoint.manifest.classifier()) {
        (Some(class), Some(c)) => {
            let k = c.classes.iter().position(|known| known == class)?;
            crate::slots::slots(endpoint.manifest)
                .iter()
                .position(|s| s.kind == SlotKind::Probability(k))?
        }
        _ => 0,
    };
    let tolerance = endpoint.manifest.contract.parity.unwrap_or(Tolerance {
        abs: 1e-4,
        rel: 0.0,
    });
    let pair = (
        row.clone(),
        value_strategy(feature, reference, false),
        value_strategy(feature, reference, false),
    );
    let direction = monotonic.direction;
    let name = format!(
        "'{}' is monotonic {}{}",
        monotonic.input,
        match direction {
            Direction::Increasing => "increasing",
            Direction::Decreasing => "decreasing",
        },
        monotonic
            .class
            .as_ref()
            .map_or(String::new(), |c| format!(" in the probability of {c}"))
    );
    let rows = pair.prop_map(move |(row, a, b)| {
        let (lo, hi) = if a.as_f64() <= b.as_f64() {
            (a, b)
        } else {
            (b, a)
        };
        let (mut low, mut high) = (row.clone(), row);
        low[index] = lo;
        high[index] = hi;
        vec![low, high]
    });
    Some(endpoint.property(&name, CASES, rows, |rows| {
        let answer = endpoint.call(rows)?;
        if !answer.ok() {
            return Err(TestCaseError::fail(format!(
                "answered {}",
                answer.describe()
            )));
        }
        let (low, high) = (answer.outputs[slot][0], answer.outputs[slot][1]);
        let holds = match direction {
            Direction::Increasing => high >= low - tolerance.allowance(low),
            Direction::Decreasing => high <= low + tolerance.allowance(low),
        };
        if holds {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "{low} at the lower value, {high} at the higher"
            )))
        }
    }))
}

/// A client's mistake at one input gets a 4xx, never a 5xx.
fn invalid_rows(endpoint: &Endpoint<'_>, row: BoxedStrategy<Vec<Value>>) -> Check {
    let manifest = endpoint.manifest.clone();
    let mistakes = prop::sample::select(Mistake::ALL.to_vec());
    let grpc = endpoint.client.grpc_addr().is_some();
    let invalid = (row, 0..manifest.inputs.len(), mistakes).prop_filter_map(
        "no invalid variant for this input",
        move |(row, index, mistake)| invalidate(&manifest, row, index, mistake, grpc),
    );
    endpoint.property(
        "invalid rows get a 4xx, never a 5xx",
        CASES,
        invalid,
        |cases| {
            let (body, what) = (&cases.0, &cases.1);
            let answer = endpoint
                .handle
                .block_on(endpoint.client.post_infer(endpoint.manifest, body, 1))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            if (400..500).contains(&answer.status) {
                Ok(())
            } else {
                Err(TestCaseError::fail(format!(
                    "{what}: answered {} instead of a 4xx",
                    answer.describe()
                )))
            }
        },
    )
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

/// One valid row: a value per input.
fn row_strategy(manifest: &Manifest, reference: Option<&Reference>) -> BoxedStrategy<Vec<Value>> {
    let columns: Vec<BoxedStrategy<Value>> = manifest
        .inputs
        .iter()
        .map(|f| value_strategy(f, reference, f.nullable))
        .collect();
    columns.prop_map(|v| v).boxed()
}

/// Values of one input: edges and a spread inside its bounds (or the
/// reference's observed range), a category, and null one time in eight.
fn value_strategy(
    feature: &Feature,
    reference: Option<&Reference>,
    nullable: bool,
) -> BoxedStrategy<Value> {
    let observed = reference.and_then(|r| match r.inputs.get(&feature.name) {
        Some(Stats::Numeric(n)) => Some((n.min, n.max)),
        _ => None,
    });
    let (lo, hi) = match (feature.min, feature.max, observed) {
        (Some(lo), Some(hi), _) => (lo, hi),
        (lo, hi, Some((a, b))) => (lo.unwrap_or(a), hi.unwrap_or(b)),
        (lo, hi, None) => (lo.unwrap_or(-1e3), hi.unwrap_or(1e3)),
    };
    let base: BoxedStrategy<Value> = match feature.datatype {
        Datatype::Bytes => {
            let categories = feature
                .categories
                .clone()
                .unwrap_or_else(|| vec!["a".to_owned(), "b".to_owned()]);
            prop::sample::select(categories)
                .prop_map(Value::Text)
                .boxed()
        }
        Datatype::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        dt if dt.is_integer() => {
            let (lo, hi) = (lo.ceil() as i64, hi.floor() as i64);
            prop_oneof![
                1 => Just(Value::Int(lo)),
                1 => Just(Value::Int(hi)),
                6 => (lo..=hi).prop_map(Value::Int),
            ]
            .boxed()
        }
        // Two decimals, as clients send them; edges included.
        _ => prop_oneof![
            1 => Just(Value::Float(lo)),
            1 => Just(Value::Float(hi)),
            6 => (lo..=hi).prop_map(|x| Value::Float((x * 100.0).round() / 100.0)),
        ]
        .boxed(),
    };
    if nullable {
        prop_oneof![1 => Just(Value::Null), 7 => base].boxed()
    } else {
        base
    }
}

/// A client's mistake at one input, which must get a 4xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mistake {
    /// A string where the input takes numbers.
    StringInNumber,
    /// A null where the input is not nullable.
    NullInNonNullable,
    /// The input left out of the request.
    Missing,
}

impl Mistake {
    const ALL: [Mistake; 3] = [
        Mistake::StringInNumber,
        Mistake::NullInNonNullable,
        Mistake::Missing,
    ];
}

/// A request made invalid at one input by `mistake`, and what it is;
/// `None` where the mistake cannot be made at that input, or by a client of
/// gRPC (`grpc`), which cannot send a string in a number, nor a missing
/// value (NaN) but in a float.
fn invalidate(
    manifest: &Manifest,
    row: Vec<Value>,
    index: usize,
    mistake: Mistake,
    grpc: bool,
) -> Option<(serde_json::Value, String)> {
    let feature = &manifest.inputs[index];
    let mut body = manifest.infer_request(&[row.as_slice()]);
    let what = match mistake {
        Mistake::StringInNumber if feature.datatype != Datatype::Bytes && !grpc => {
            body["inputs"][index]["data"] = json!(["12.5"]);
            format!("a string in '{}' ({})", feature.name, feature.datatype)
        }
        Mistake::NullInNonNullable
            if !feature.nullable && (!grpc || feature.datatype.is_float()) =>
        {
            body["inputs"][index]["data"] = json!([null]);
            format!("null in the non-nullable '{}'", feature.name)
        }
        Mistake::Missing => {
            body["inputs"].as_array_mut()?.remove(index);
            format!("'{}' left out", feature.name)
        }
        Mistake::StringInNumber | Mistake::NullInNonNullable => return None,
    };
    Some((body, what))
}
