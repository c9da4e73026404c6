//! Which manifest input each column of a tree ensemble's input matrix is,
//! followed back through the graph: a cast, an imputer (for present values),
//! a scaler or arithmetic with a constant, a one-hot encoder, a gather of a
//! column, a reshape, and the concatenation of them all, as the exporters
//! write a scikit-learn `ColumnTransformer` or `StandardScaler`. Anything
//! else stops the trace, naming the node.

use std::collections::HashMap;

use preflight_bundle::Manifest;

use super::onnx::{GraphProto, NodeProto};

/// One column of a tensor, as a function of the manifest's inputs.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Column {
    /// `raw · scale + offset` of a numeric input.
    Number {
        input: usize,
        scale: f64,
        offset: f64,
    },
    /// A text input as it is, before its one-hot encoding.
    Text { input: usize },
    /// 1 where the input is this category, else 0.
    Category { input: usize, category: String },
}

/// The graph, indexed for tracing.
pub(super) struct Graph<'a> {
    producers: HashMap<&'a str, &'a NodeProto>,
    constants: HashMap<&'a str, Vec<f64>>,
    manifest: &'a Manifest,
}

impl<'a> Graph<'a> {
    pub(super) fn new(graph: &'a GraphProto, manifest: &'a Manifest) -> Self {
        let producers = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
            .collect();
        let constants = graph
            .initializer
            .iter()
            .filter_map(|t| Some((t.name.as_str(), t.values()?)))
            .collect();
        Self {
            producers,
            constants,
            manifest,
        }
    }

    /// The columns of `tensor`; why not, naming the node the trace stopped at.
    pub(super) fn columns(&self, tensor: &str) -> Result<Vec<Column>, String> {
        let Some(node) = self.producers.get(tensor) else {
            return self.input(tensor);
        };
        match node.op_type.as_str() {
            "Cast" | "Identity" | "Imputer" | "Reshape" => self.traced(node, 0),
            // `Where(IsNaN(x), fill, x)`: the float64 imputer; present values pass.
            "Where" => self.traced(node, 2),
            "Concat" => (0..node.input.len()).try_fold(Vec::new(), |mut all, k| {
                all.extend(self.traced(node, k)?);
                Ok(all)
            }),
            "Gather" => self.gather(node),
            "Sub" | "Add" | "Mul" | "Div" => self.arithmetic(node),
            "Scaler" => self.scaler(node),
            "OneHotEncoder" => self.one_hot(node),
            other => Err(self.stop(
                node,
                &format!("is a {other}, which the trace does not follow"),
            )),
        }
    }

    /// The columns of the node's `k`-th input.
    fn traced(&self, node: &NodeProto, k: usize) -> Result<Vec<Column>, String> {
        let name = node
            .input
            .get(k)
            .ok_or_else(|| self.stop(node, "has too few inputs"))?;
        self.columns(name)
    }

    /// The columns a constant list of indices picks.
    fn gather(&self, node: &NodeProto) -> Result<Vec<Column>, String> {
        let columns = self.traced(node, 0)?;
        self.constant(node, 1)?
            .iter()
            .map(|&i| {
                columns
                    .get(i as usize)
                    .cloned()
                    .ok_or_else(|| self.stop(node, "gathers a column that is not there"))
            })
            .collect()
    }

    /// A column with a constant, per column or for all, subtracted, added,
    /// multiplied or divided.
    fn arithmetic(&self, node: &NodeProto) -> Result<Vec<Column>, String> {
        let constant = self.constant(node, 1)?;
        let op = node.op_type.as_str();
        affine(self.traced(node, 0)?, |k, x| {
            let c = *constant.get(k).or(constant.first())?;
            Some(match op {
                "Sub" => then((1.0, -c), x),
                "Add" => then((1.0, c), x),
                "Mul" => then((c, 0.0), x),
                _ => then((1.0 / c, 0.0), x),
            })
        })
        .ok_or_else(|| self.stop(node, "is arithmetic on a column that is not a number"))
    }

    /// ONNX-ML's `Scaler`: `(x - offset) · scale`, per column or for all.
    fn scaler(&self, node: &NodeProto) -> Result<Vec<Column>, String> {
        let offsets = node.numbers("offset").unwrap_or_default();
        let scales = node.numbers("scale").unwrap_or_default();
        let pick =
            |v: &[f64], k: usize, default: f64| v.get(k).or(v.first()).copied().unwrap_or(default);
        affine(self.traced(node, 0)?, |k, x| {
            let (o, s) = (pick(&offsets, k, 0.0), pick(&scales, k, 1.0));
            Some(then((s, -o * s), x))
        })
        .ok_or_else(|| self.stop(node, "scales a column that is not a number"))
    }

    /// ONNX-ML's `OneHotEncoder`: a column per category of each input column.
    fn one_hot(&self, node: &NodeProto) -> Result<Vec<Column>, String> {
        let mut categories = node.strings("cats_strings");
        if categories.is_empty() {
            categories = node
                .ints("cats_int64s")
                .iter()
                .map(i64::to_string)
                .collect();
        }
        let mut all = Vec::new();
        for column in self.traced(node, 0)? {
            let input = match column {
                Column::Text { input } => input,
                Column::Number {
                    input,
                    scale: 1.0,
                    offset: 0.0,
                } => input,
                _ => return Err(self.stop(node, "encodes a column that is not an input")),
            };
            all.extend(categories.iter().map(|c| Column::Category {
                input,
                category: c.clone(),
            }));
        }
        Ok(all)
    }

    /// A graph input: the manifest input of that name, one column.
    fn input(&self, tensor: &str) -> Result<Vec<Column>, String> {
        let index = self
            .manifest
            .inputs
            .iter()
            .position(|f| f.name == tensor)
            .ok_or_else(|| format!("tensor '{tensor}' is neither a node's output nor an input"))?;
        let column = if self.manifest.inputs[index].datatype.is_numeric() {
            Column::Number {
                input: index,
                scale: 1.0,
                offset: 0.0,
            }
        } else {
            Column::Text { input: index }
        };
        Ok(vec![column])
    }

    fn constant(&self, node: &NodeProto, k: usize) -> Result<Vec<f64>, String> {
        node.input
            .get(k)
            .and_then(|name| self.constants.get(name.as_str()))
            .cloned()
            .ok_or_else(|| self.stop(node, "takes a second input that is not a constant"))
    }

    fn stop(&self, node: &NodeProto, why: &str) -> String {
        let name = node.output.first().map_or("", String::as_str);
        format!("node {} '{name}' {why}", node.op_type)
    }
}

/// The affine map `(scale, offset)`, `v · scale + offset`, applied to a
/// column that is `raw · x.0 + x.1`.
fn then((scale, offset): (f64, f64), x: (f64, f64)) -> (f64, f64) {
    (x.0 * scale, x.1 * scale + offset)
}

/// Maps each column, numeric all, by `f(its position, (scale, offset))`;
/// `None` where a column is not a number or `f` has no map for it.
fn affine(
    columns: Vec<Column>,
    f: impl Fn(usize, (f64, f64)) -> Option<(f64, f64)>,
) -> Option<Vec<Column>> {
    columns
        .into_iter()
        .enumerate()
        .map(|(k, column)| match column {
            Column::Number {
                input,
                scale,
                offset,
            } => {
                let (scale, offset) = f(k, (scale, offset))?;
                Some(Column::Number {
                    input,
                    scale,
                    offset,
                })
            }
            _ => None,
        })
        .collect()
}
