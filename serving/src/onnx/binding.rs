//! How the manifest's inputs and outputs map onto the graph's tensors,
//! checked once when a model loads; a mismatch names both sides.

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};
use preflight_bundle::{Bundle, Datatype, Feature, Manifest};

/// How the manifest's inputs are fed to the graph.
#[derive(Debug)]
pub(super) enum InputBinding {
    /// One graph input per manifest input, by name (skl2onnx's shape for a
    /// ColumnTransformer), each of rank 1 (`[N]`) or 2 (`[N, 1]`).
    PerColumn(Vec<(String, usize)>),
    /// One graph input `[N, k]` holding the manifest's inputs stacked in order.
    Stacked {
        name: String,
        element: TensorElementType,
    },
}

#[derive(Debug)]
pub(super) struct Binding {
    pub(super) inputs: InputBinding,
    /// The graph output of each manifest output, with its element type.
    pub(super) outputs: Vec<(String, TensorElementType)>,
}

/// Where the graph and the manifest disagree, naming both sides.
#[derive(Debug, thiserror::Error)]
pub(super) enum BindingError {
    #[error(
        "the manifest's inputs {} are not inputs of the graph (graph inputs: {graph})",
        .missing.join(", ")
    )]
    MissingInputs { missing: Vec<String>, graph: String },
    #[error("the graph's input '{0}' is not declared in the manifest's [[inputs]]")]
    Undeclared(String),
    #[error("the graph has no input '{0}'")]
    NoInput(String),
    #[error("the graph's input '{0}' is not a tensor")]
    InputNotATensor(String),
    #[error(
        "the graph's output '{0}' is not a tensor (a classifier's probability map is not \
         supported; export with zipmap disabled)"
    )]
    OutputNotATensor(String),
    #[error("the graph's input '{name}' has rank {rank}; a column is [N] or [N, 1]")]
    Rank { name: String, rank: usize },
    #[error(
        "the graph has one input '{name}' of {element:?}; stacking the manifest's inputs needs a \
         float tensor"
    )]
    StackNotFloat {
        name: String,
        element: TensorElementType,
    },
    #[error(
        "the graph has one input '{name}', but the manifest's input '{input}' is {datatype} and \
         cannot be stacked into it"
    )]
    CannotStack {
        name: String,
        input: String,
        datatype: Datatype,
    },
    #[error(
        "the manifest's output '{output}' is not an output of the graph (graph outputs: {graph})"
    )]
    MissingOutput { output: String, graph: String },
    #[error(
        "the manifest's {side} '{feature}' is {datatype} but the graph's {side} '{graph_name}' \
         holds {element:?}"
    )]
    Type {
        side: &'static str,
        feature: String,
        datatype: Datatype,
        graph_name: String,
        element: TensorElementType,
    },
}

/// A graph input or output: its name, and its element type and rank when it
/// is a tensor.
type GraphTensor = (String, Option<(TensorElementType, usize)>);

impl Binding {
    /// Checks the graph against the manifest.
    pub(super) fn new(session: &Session, bundle: &Bundle) -> Result<Self, BindingError> {
        let manifest = bundle.manifest();
        let graph_inputs: Vec<GraphTensor> = session
            .inputs()
            .iter()
            .map(|i| (i.name().to_owned(), tensor_of(i.dtype())))
            .collect();
        let graph_outputs: Vec<GraphTensor> = session
            .outputs()
            .iter()
            .map(|o| (o.name().to_owned(), tensor_of(o.dtype())))
            .collect();
        Ok(Self {
            inputs: bind_inputs(manifest, &graph_inputs)?,
            outputs: bind_outputs(manifest, &graph_outputs)?,
        })
    }
}

/// By name when every manifest input is a graph input; else stacked into
/// the graph's one float input.
fn bind_inputs(manifest: &Manifest, graph: &[GraphTensor]) -> Result<InputBinding, BindingError> {
    let by_name = manifest
        .inputs
        .iter()
        .all(|f| graph.iter().any(|(n, _)| n == &f.name));
    if by_name {
        return per_column(manifest, graph);
    }
    if let [(name, tensor)] = graph {
        return stacked(manifest, name, *tensor);
    }
    let missing: Vec<String> = manifest
        .inputs
        .iter()
        .filter(|f| !graph.iter().any(|(n, _)| n == &f.name))
        .map(|f| f.name.clone())
        .collect();
    Err(BindingError::MissingInputs {
        missing,
        graph: names(graph),
    })
}

fn per_column(manifest: &Manifest, graph: &[GraphTensor]) -> Result<InputBinding, BindingError> {
    if let Some((extra, _)) = graph.iter().find(|(n, _)| manifest.input(n).is_none()) {
        return Err(BindingError::Undeclared(extra.clone()));
    }
    let mut columns = Vec::new();
    for feature in &manifest.inputs {
        let Some((name, tensor)) = graph.iter().find(|(n, _)| n == &feature.name) else {
            return Err(BindingError::NoInput(feature.name.clone()));
        };
        let (element, rank) = tensor.ok_or_else(|| BindingError::InputNotATensor(name.clone()))?;
        check_type("input", feature, name, element)?;
        if !(rank == 1 || rank == 2) {
            return Err(BindingError::Rank {
                name: name.clone(),
                rank,
            });
        }
        columns.push((name.clone(), rank));
    }
    Ok(InputBinding::PerColumn(columns))
}

fn stacked(
    manifest: &Manifest,
    name: &str,
    tensor: Option<(TensorElementType, usize)>,
) -> Result<InputBinding, BindingError> {
    let (element, _) = tensor.ok_or_else(|| BindingError::InputNotATensor(name.to_owned()))?;
    if !matches!(
        element,
        TensorElementType::Float32 | TensorElementType::Float64
    ) {
        return Err(BindingError::StackNotFloat {
            name: name.to_owned(),
            element,
        });
    }
    if let Some(f) = manifest
        .inputs
        .iter()
        .find(|f| !f.datatype.is_numeric() && f.datatype != Datatype::Bool)
    {
        return Err(BindingError::CannotStack {
            name: name.to_owned(),
            input: f.name.clone(),
            datatype: f.datatype,
        });
    }
    Ok(InputBinding::Stacked {
        name: name.to_owned(),
        element,
    })
}

fn bind_outputs(
    manifest: &Manifest,
    graph: &[GraphTensor],
) -> Result<Vec<(String, TensorElementType)>, BindingError> {
    let mut outputs = Vec::new();
    for feature in &manifest.outputs {
        // A single output matches whatever the exporter named it ("variable").
        let found = graph.iter().find(|(n, _)| n == &feature.name).or(
            match (manifest.outputs.len(), graph) {
                (1, [only]) => Some(only),
                _ => None,
            },
        );
        let (name, tensor) = found.ok_or_else(|| BindingError::MissingOutput {
            output: feature.name.clone(),
            graph: names(graph),
        })?;
        let (element, _) = tensor.ok_or_else(|| BindingError::OutputNotATensor(name.clone()))?;
        check_type("output", feature, name, element)?;
        outputs.push((name.clone(), element));
    }
    Ok(outputs)
}

fn names(list: &[GraphTensor]) -> String {
    list.iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn element_of(datatype: Datatype) -> Option<TensorElementType> {
    Some(match datatype {
        Datatype::Fp32 => TensorElementType::Float32,
        Datatype::Fp64 => TensorElementType::Float64,
        Datatype::Int64 => TensorElementType::Int64,
        Datatype::Int32 => TensorElementType::Int32,
        Datatype::Bool => TensorElementType::Bool,
        Datatype::Bytes => TensorElementType::String,
        _ => return None,
    })
}

fn tensor_of(value: &ValueType) -> Option<(TensorElementType, usize)> {
    match value {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.len())),
        _ => None,
    }
}

fn check_type(
    side: &'static str,
    feature: &Feature,
    graph_name: &str,
    element: TensorElementType,
) -> Result<(), BindingError> {
    if element_of(feature.datatype) == Some(element) {
        Ok(())
    } else {
        Err(BindingError::Type {
            side,
            feature: feature.name.clone(),
            datatype: feature.datatype,
            graph_name: graph_name.to_owned(),
            element,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn manifest() -> Manifest {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/models/eta-madrid/1/manifest.toml");
        Manifest::load(&path).expect("the fixture's manifest")
    }

    /// The graph of eta-madrid as skl2onnx exports it: one input per
    /// column, of the manifest's types.
    fn graph(manifest: &Manifest) -> Vec<GraphTensor> {
        let columns = manifest.inputs.iter().map(|f| {
            let element = element_of(f.datatype).expect("a datatype a graph takes");
            (f.name.clone(), Some((element, 2)))
        });
        columns.collect()
    }

    #[test]
    fn a_graph_of_the_manifest_s_columns_binds_by_name() {
        let manifest = manifest();
        let binding = bind_inputs(&manifest, &graph(&manifest)).expect("binds");
        let InputBinding::PerColumn(columns) = binding else {
            panic!("bound otherwise: {binding:?}");
        };
        assert_eq!(columns.len(), manifest.inputs.len());
    }

    #[test]
    fn each_mismatch_names_both_sides() {
        let manifest = manifest();
        let mut renamed = graph(&manifest);
        renamed[0].0 = "distance".to_owned();
        let mut retyped = graph(&manifest);
        retyped[0].1 = Some((TensorElementType::Float64, 2));
        let mut extra = graph(&manifest);
        extra.push(("zone".to_owned(), Some((TensorElementType::Int64, 2))));
        let said = |graph: &[GraphTensor]| match bind_inputs(&manifest, graph) {
            Ok(binding) => format!("bound: {binding:?}"),
            Err(error) => error.to_string(),
        };
        assert_eq!(
            said(&renamed),
            "the manifest's inputs distance_km are not inputs of the graph (graph inputs: \
             distance, hour, day_of_week, vehicle, prep_time_min, items, rain)"
        );
        assert_eq!(
            said(&retyped),
            "the manifest's input 'distance_km' is FP32 but the graph's input 'distance_km' \
             holds Float64"
        );
        assert_eq!(
            said(&extra),
            "the graph's input 'zone' is not declared in the manifest's [[inputs]]"
        );
    }
}
