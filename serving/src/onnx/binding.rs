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

/// A graph input or output: its name, and its element type and rank when it
/// is a tensor.
type GraphTensor = (String, Option<(TensorElementType, usize)>);

impl Binding {
    /// Checks the graph against the manifest.
    pub(super) fn new(session: &Session, bundle: &Bundle) -> Result<Self, String> {
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
fn bind_inputs(manifest: &Manifest, graph: &[GraphTensor]) -> Result<InputBinding, String> {
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
    let missing: Vec<&str> = manifest
        .inputs
        .iter()
        .filter(|f| !graph.iter().any(|(n, _)| n == &f.name))
        .map(|f| f.name.as_str())
        .collect();
    Err(format!(
        "the manifest's inputs {} are not inputs of the graph (graph inputs: {})",
        missing.join(", "),
        names(graph)
    ))
}

fn per_column(manifest: &Manifest, graph: &[GraphTensor]) -> Result<InputBinding, String> {
    if let Some((extra, _)) = graph.iter().find(|(n, _)| manifest.input(n).is_none()) {
        return Err(format!(
            "the graph's input '{extra}' is not declared in the manifest's [[inputs]]"
        ));
    }
    let mut columns = Vec::new();
    for feature in &manifest.inputs {
        let Some((name, tensor)) = graph.iter().find(|(n, _)| n == &feature.name) else {
            return Err(format!("the graph has no input '{}'", feature.name));
        };
        let (element, rank) =
            tensor.ok_or_else(|| format!("the graph's input '{name}' is not a tensor"))?;
        check_type("input", feature, name, element)?;
        if !(rank == 1 || rank == 2) {
            return Err(format!(
                "the graph's input '{name}' has rank {rank}; a column is [N] or [N, 1]"
            ));
        }
        columns.push((name.clone(), rank));
    }
    Ok(InputBinding::PerColumn(columns))
}

fn stacked(
    manifest: &Manifest,
    name: &str,
    tensor: Option<(TensorElementType, usize)>,
) -> Result<InputBinding, String> {
    let (element, _) =
        tensor.ok_or_else(|| format!("the graph's input '{name}' is not a tensor"))?;
    if !matches!(
        element,
        TensorElementType::Float32 | TensorElementType::Float64
    ) {
        return Err(format!(
            "the graph has one input '{name}' of {element:?}; stacking the manifest's inputs \
            needs a float tensor"
        ));
    }
    if let Some(f) = manifest
        .inputs
        .iter()
        .find(|f| !f.datatype.is_numeric() && f.datatype != Datatype::Bool)
    {
        return Err(format!(
            "the graph has one input '{name}', but the manifest's input '{}' is {} and cannot \
            be stacked into it",
            f.name, f.datatype
        ));
    }
    Ok(InputBinding::Stacked {
        name: name.to_owned(),
        element,
    })
}

fn bind_outputs(
    manifest: &Manifest,
    graph: &[GraphTensor],
) -> Result<Vec<(String, TensorElementType)>, String> {
    let mut outputs = Vec::new();
    for feature in &manifest.outputs {
        // A single output matches whatever the exporter named it ("variable").
        let found = graph.iter().find(|(n, _)| n == &feature.name).or(
            match (manifest.outputs.len(), graph) {
                (1, [only]) => Some(only),
                _ => None,
            },
        );
        let (name, tensor) = found.ok_or_else(|| {
            format!(
                "the manifest's output '{}' is not an output of the graph (graph outputs: {})",
                feature.name,
                names(graph)
            )
        })?;
        let (element, _) = tensor.ok_or_else(|| {
            format!(
                "the graph's output '{name}' is not a tensor (a classifier's probability map \
                is not supported; export with zipmap disabled)"
            )
        })?;
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
    side: &str,
    feature: &Feature,
    graph_name: &str,
    element: TensorElementType,
) -> Result<(), String> {
    if element_of(feature.datatype) == Some(element) {
        Ok(())
    } else {
        Err(format!(
            "the manifest's {side} '{}' is {} but the graph's {side} '{graph_name}' holds \
            {element:?}",
            feature.name, feature.datatype
        ))
    }
}
