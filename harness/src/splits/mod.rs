//! Probe rows for a bundle without `probes.jsonl`, derived from `model.onnx`
//! itself: every split of its tree ensembles, traced back to a manifest
//! input (`trace.rs`), and rows either side of each, made from the samples.
//!
//! Without the training process there is no training-time output for them:
//! they are compared with the artifact's own outputs, run in-process, which
//! covers what serving does to the graph (the server-side half of what a
//! bundle's own probes cover). The Python package's probes
//! (`python/src/preflight_bundle/probes.py`) bisect through the graph and
//! start each probe from a row that reaches its split; these take the split's
//! value back through the traced preprocessing and start from the samples in
//! turn.

mod onnx;
mod trace;

use std::collections::{BTreeMap, BTreeSet};

use preflight_bundle::{Bundle, Datatype, Feature, Record, Split, Value};

use self::trace::{Column, Graph};

/// How many rows the harness derives at most, as the package's default.
pub(crate) const BUDGET: usize = 2000;

/// The comparisons whose sides a number crosses; EQ and NEQ are not probed.
const CROSSED: [&str; 4] = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"];
/// ONNX-ML opset 5 `TreeEnsemble`'s modes, by their byte.
const OPSET5_MODES: [&str; 6] = [
    "BRANCH_LEQ",
    "BRANCH_LT",
    "BRANCH_GTE",
    "BRANCH_GT",
    "BRANCH_EQ",
    "BRANCH_NEQ",
];

/// The rows derived for `bundle` from `samples`, without outputs; why there
/// are none where there are none.
pub(crate) fn derive(bundle: &Bundle, samples: &[Record]) -> Result<Vec<Record>, String> {
    let path = bundle.model_path();
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let graph = onnx::decode(&bytes)?;
    let manifest = bundle.manifest();
    let traced = Graph::new(&graph, manifest);
    let mut splits = BTreeMap::new();
    let mut ensembles = 0;
    for node in &graph.node {
        let Some(found) = ensemble_splits(node) else {
            continue;
        };
        ensembles += 1;
        let input = node.input.first().map_or("", String::as_str);
        let columns = traced.columns(input).map_err(|why| {
            format!("the trees' input could not be traced to the manifest's inputs: {why}")
        })?;
        for (column, threshold) in found {
            if let Some(c) = columns.get(column) {
                splits.insert((column, threshold.to_bits()), c.clone());
            }
        }
    }
    if ensembles == 0 {
        return Err("model.onnx has no tree ensemble".to_owned());
    }
    if samples.is_empty() {
        return Err("no samples to start the probes from".to_owned());
    }
    let made = rows(&manifest.inputs, samples, &splits);
    if made.is_empty() {
        return Err("no split's values lie within the inputs' bounds".to_owned());
    }
    Ok(made)
}

/// `(column, threshold)` of every split of a tree ensemble node that a
/// number crosses; `None` for another node.
fn ensemble_splits(node: &onnx::NodeProto) -> Option<Vec<(usize, f64)>> {
    let (values, modes): (Vec<f64>, Vec<String>) = match node.op_type.as_str() {
        "TreeEnsembleRegressor" | "TreeEnsembleClassifier" => {
            (node.numbers("nodes_values")?, node.strings("nodes_modes"))
        }
        "TreeEnsemble" => {
            let modes = node.numbers("nodes_modes")?;
            let modes = modes
                .iter()
                .map(|&m| {
                    OPSET5_MODES
                        .get(m as usize)
                        .copied()
                        .unwrap_or("")
                        .to_owned()
                })
                .collect();
            (node.numbers("nodes_splits")?, modes)
        }
        _ => return None,
    };
    let features = node.ints("nodes_featureids");
    Some(
        features
            .iter()
            .zip(values)
            .zip(modes)
            .filter(|(_, mode)| CROSSED.contains(&mode.as_str()))
            .map(|((&f, v), _)| (f as usize, v))
            .collect(),
    )
}

/// The probe rows: each split's values either side, then a further step
/// each side, then the nulls of the nullable inputs split on; from the
/// samples in turn, within [`BUDGET`].
fn rows(
    inputs: &[Feature],
    samples: &[Record],
    splits: &BTreeMap<(usize, u64), Column>,
) -> Vec<Record> {
    let mut made = Vec::new();
    let mut seen = BTreeSet::new();
    for (input, value, split) in moves(inputs, splits) {
        if made.len() >= BUDGET {
            break;
        }
        if inputs[input].check_domain(&value).is_err() {
            continue;
        }
        let base = &samples[made.len() % samples.len()];
        if !seen.insert((base.id.clone(), input, value.to_json().to_string())) {
            continue;
        }
        let mut row = base.inputs.clone();
        row[input] = value;
        let id = format!("derived-p{:04}", made.len());
        made.push(Record::probe(id, row, split));
    }
    made
}

/// `(input, value, split)` for every value a probe sends, in the order the
/// budget takes them: each column's first split, then each one's second,
/// and so on, so that every input gets its share; the nearest values first,
/// the further steps and the nulls after.
fn moves(
    inputs: &[Feature],
    splits: &BTreeMap<(usize, u64), Column>,
) -> Vec<(usize, Value, Split)> {
    let mut rank = BTreeMap::new();
    let mut order: Vec<(usize, &(usize, u64), &Column)> = splits
        .iter()
        .map(|(key, traced)| {
            let r = rank.entry(key.0).or_insert(0);
            *r += 1;
            (*r, key, traced)
        })
        .collect();
    order.sort_by_key(|&(r, key, _)| (r, *key));
    let mut passes: [Vec<(usize, Value, Split)>; 3] = Default::default();
    for (_, &(column, bits), traced) in order {
        let threshold = f64::from_bits(bits);
        let Some((input, values)) = values(inputs, traced, threshold) else {
            continue;
        };
        let split = Split {
            input: inputs[input].name.clone(),
            column: column as u64,
            threshold,
        };
        for (pass, values) in values.into_iter().enumerate() {
            passes[pass].extend(values.into_iter().map(|v| (input, v, split.clone())));
        }
        if inputs[input].nullable {
            passes[2].push((input, Value::Null, split));
        }
    }
    passes.into_iter().flatten().collect()
}

/// The input a traced column reads, and the values that put it either side
/// of `threshold`, nearest first; `None` for a column no value moves.
fn values(inputs: &[Feature], traced: &Column, threshold: f64) -> Option<(usize, Vec<Vec<Value>>)> {
    match traced {
        Column::Number {
            input,
            scale,
            offset,
        } if *scale != 0.0 => Some((*input, sides(&inputs[*input], (threshold - offset) / scale))),
        Column::Category { input, category } => {
            let value = match category.parse() {
                Ok(n) if inputs[*input].datatype.is_integer() => Value::Int(n),
                _ => Value::Text(category.clone()),
            };
            Some((*input, vec![vec![value]]))
        }
        _ => None,
    }
}

/// The values of `input` either side of `raw`, where its column crosses a
/// split, in the datatype the endpoint reads: the two nearest first, one
/// step further out on each side second.
fn sides(input: &Feature, raw: f64) -> Vec<Vec<Value>> {
    match input.datatype {
        Datatype::Fp32 | Datatype::Fp16 => {
            let at = raw as f32;
            let (below, above) = if f64::from(at) <= raw {
                (at, at.next_up())
            } else {
                (at.next_down(), at)
            };
            let float = |v: f32| Value::Float(f64::from(v));
            vec![
                vec![float(below), float(above)],
                vec![float(below.next_down()), float(above.next_up())],
            ]
        }
        Datatype::Fp64 => {
            let (below, above) = (raw, raw.next_up());
            vec![
                vec![Value::Float(below), Value::Float(above)],
                vec![
                    Value::Float(below.next_down()),
                    Value::Float(above.next_up()),
                ],
            ]
        }
        d if d.is_integer() && raw.is_finite() => {
            let (below, above) = (raw.floor(), raw.floor() + 1.0);
            let int = |v: f64| Value::Int(v as i64);
            vec![
                vec![int(below), int(above)],
                vec![int(below - 1.0), int(above + 1.0)],
            ]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use preflight_bundle::{Bundle, Value};

    use super::onnx::decode;
    use super::trace::{Column, Graph};
    use super::{BUDGET, derive};

    fn fixture(name: &str) -> Bundle {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/models")
            .join(name);
        Bundle::open(&dir).expect("a fixture bundle")
    }

    fn tree_input_columns(bundle: &Bundle) -> Vec<Column> {
        let bytes = std::fs::read(bundle.model_path()).expect("model.onnx");
        let graph = decode(&bytes).expect("an ONNX graph");
        let ensemble = graph
            .node
            .iter()
            .find(|n| n.op_type.starts_with("TreeEnsemble"));
        let input = ensemble.expect("a tree ensemble").input[0].clone();
        Graph::new(&graph, bundle.manifest())
            .columns(&input)
            .expect("traced")
    }

    #[test]
    fn a_column_transformer_is_traced_to_its_inputs_and_categories() {
        let bundle = fixture("eta-madrid/1");
        let columns = tree_input_columns(&bundle);
        let names = |c: &Column| match c {
            Column::Number {
                input,
                scale,
                offset,
            } => {
                format!("{}·{scale}+{offset}", bundle.manifest().inputs[*input].name)
            }
            Column::Category { input, category } => {
                format!("{}={category}", bundle.manifest().inputs[*input].name)
            }
            Column::Text { input } => format!("text {input}"),
        };
        let traced: Vec<String> = columns.iter().map(names).collect();
        // The imputed preparation time, the numbers passed through, the one-hot vehicle.
        assert_eq!(
            traced,
            [
                "prep_time_min·1+0",
                "distance_km·1+0",
                "hour·1+0",
                "day_of_week·1+0",
                "items·1+0",
                "rain·1+0",
                "vehicle=bicycle",
                "vehicle=motorbike",
                "vehicle=car",
                "vehicle=walk"
            ]
        );
    }

    #[test]
    fn a_standard_scaler_is_traced_as_its_affine_map() {
        let columns = tree_input_columns(&fixture("diabetes-progression/1"));
        assert_eq!(columns.len(), 10);
        for column in columns {
            let Column::Number { scale, offset, .. } = column else {
                panic!("{column:?} is not a number");
            };
            // (raw − mean) / std: neither the identity nor degenerate.
            assert!(scale.is_finite() && scale != 0.0 && scale != 1.0, "{scale}");
            assert!(offset.is_finite(), "{offset}");
        }
    }

    #[test]
    fn each_derived_row_is_a_sample_with_its_split_input_moved_within_the_domain() {
        let bundle = fixture("eta-madrid/1");
        let samples = bundle.samples().expect("samples").expect("present");
        let rows = derive(&bundle, &samples).expect("rows");
        assert_eq!(rows.len(), BUDGET);
        let inputs = &bundle.manifest().inputs;
        let mut moved_inputs = std::collections::BTreeSet::new();
        for (n, row) in rows.iter().enumerate() {
            let split = row.probe.as_ref().expect("its split");
            let base = &samples[n % samples.len()];
            let at = inputs
                .iter()
                .position(|f| f.name == split.input)
                .expect("an input");
            for (k, (value, sampled)) in row.inputs.iter().zip(&base.inputs).enumerate() {
                if k != at {
                    assert_eq!(value, sampled, "row {n} moved '{}'", inputs[k].name);
                }
            }
            inputs[at]
                .check_domain(&row.inputs[at])
                .expect("within the domain");
            moved_inputs.insert(split.input.clone());
            // A float32 input gets float32 values, as the endpoint reads them.
            if let (Value::Float(x), "distance_km") = (&row.inputs[at], split.input.as_str()) {
                assert_eq!(f64::from(*x as f32), *x);
            }
        }
        assert_eq!(
            moved_inputs.len(),
            inputs.len(),
            "every input gets its share"
        );
    }

    #[test]
    fn a_graph_without_trees_has_no_derived_rows() {
        let bundle = fixture("eta-rome/1");
        let samples = bundle.samples().expect("samples").expect("present");
        assert_eq!(
            derive(&bundle, &samples).expect_err("no trees"),
            "model.onnx has no tree ensemble"
        );
    }
}
