"""What the float64 export needs beyond the converters.

- Splits as the learner makes them. scikit-learn's trees and XGBoost round
  their input to float32 before comparing it with a threshold, so the export
  rounds the ensemble's double input to float32 and back
  (`round_split_inputs`); LightGBM compares float64 values with float64
  thresholds, which onnxmltools writes as float32, so the export puts the
  model's own thresholds back as doubles (`exact_thresholds`).
  HistGradientBoosting's converter (`hist.py`) writes doubles itself.
- Integers in double: training converts an integer column to float64 before
  any arithmetic, so the export reads it as a double too and casts the
  INT64 graph input to double first (`integer_inputs`).
- Imputation in double: ONNX-ML's `Imputer` takes floats only, so a
  `SimpleImputer` on a double input becomes `IsNaN` and `Where` with the
  fitted statistics as doubles (`convert_imputer`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class NotExact(ValueError):
    """The float64 export cannot split as the learner does."""


def is_tree_ensemble(node: onnx.NodeProto) -> bool:
    return node.domain == "ai.onnx.ml" and node.op_type.startswith("TreeEnsemble")


def round_split_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rounds each tree ensemble's double input to float32 and back, as the
    learner rounds its input in training; the thresholds stay doubles."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    for n in out.graph.node:
        if is_tree_ensemble(n):
            source = n.input[0]
            as_float, back = f"{source}_as_float32", f"{source}_rounded"
            nodes.append(helper.make_node("Cast", [source], [as_float], name=f"{n.name}_round", to=TensorProto.FLOAT))
            nodes.append(helper.make_node("Cast", [as_float], [back], name=f"{n.name}_widen", to=TensorProto.DOUBLE))
            n.input[0] = back
        nodes.append(n)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def lightgbm_thresholds(est) -> dict[int, np.ndarray]:
    """Every numeric split threshold of a LightGBM model, by feature, as the
    float64 values LightGBM compares with."""
    found: dict[int, set[float]] = {}

    def walk(node: dict) -> None:
        if "split_feature" not in node:
            return
        if node.get("decision_type") == "<=":
            found.setdefault(int(node["split_feature"]), set()).add(float(node["threshold"]))
        walk(node["left_child"])
        walk(node["right_child"])

    for tree in est.booster_.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return {f: np.array(sorted(v), dtype=np.float64) for f, v in found.items()}


def exact_thresholds(model: onnx.ModelProto, thresholds: dict[int, np.ndarray]) -> onnx.ModelProto:
    """Each tree ensemble's float32 thresholds replaced by the float64 value
    of the learner that rounds to it, as `nodes_values_as_tensor`. A
    threshold no value rounds to, or that two values round to, is refused:
    the double export could not split as training does."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in filter(is_tree_ensemble, out.graph.node):
        attrs = {a.name: a for a in node.attribute}
        if "nodes_values" not in attrs:
            continue
        values = np.array(attrs["nodes_values"].floats, dtype=np.float32)
        features = list(attrs["nodes_featureids"].ints)
        modes = list(attrs["nodes_modes"].strings)
        doubled = values.astype(np.float64)
        for k, (v, f, mode) in enumerate(zip(values, features, modes)):
            if mode not in (b"BRANCH_LEQ", b"BRANCH_LT"):
                # Leaves, and categorical splits on whole numbers, which a double holds exactly.
                continue
            candidates = thresholds.get(f, np.array([]))
            matches = np.unique(candidates[candidates.astype(np.float32) == v])
            if len(matches) == 1:
                doubled[k] = matches[0]
            elif len(matches) > 1:
                raise NotExact(
                    f"feature {f} has thresholds {matches.tolist()} that round to the same float32; "
                    "the float64 export cannot tell them apart"
                )
            else:
                raise NotExact(f"the export's threshold {float(v)!r} of feature {f} is none of the model's")
        node.attribute.remove(attrs["nodes_values"])
        node.attribute.append(helper.make_attribute("nodes_values_as_tensor", numpy_helper.from_array(doubled, "nodes_values")))
    return out


def integer_inputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """The graph inputs `names`, exported as doubles, made INT64 inputs that
    are cast to double before anything reads them: what the wire carries
    stays an integer, and what the model computes is training's float64."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    casts = []
    for name in names:
        widened = f"{name}_as_double"
        for node in graph.node:
            for k, used in enumerate(node.input):
                if used == name:
                    node.input[k] = widened
        casts.append(helper.make_node("Cast", [name], [widened], name=f"{name}_widen", to=TensorProto.DOUBLE))
        (declared,) = [i for i in graph.input if i.name == name]
        declared.type.tensor_type.elem_type = TensorProto.INT64
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return out


def convert_imputer(scope, operator, container):
    """skl2onnx's SimpleImputer converter, but for a double input: `IsNaN`
    and `Where` with the fitted statistics as doubles."""
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.common import concatenate_variables
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer

    if not isinstance(operator.inputs[0].type, DoubleTensorType):
        return convert_sklearn_imputer(scope, operator, container)
    statistics = np.asarray(operator.raw_operator.statistics_, dtype=np.float64)
    x = concatenate_variables(scope, operator.inputs, container)
    fill = scope.get_unique_variable_name("fill")
    container.add_initializer(fill, TensorProto.DOUBLE, [1, statistics.size], statistics.tolist())
    missing = scope.get_unique_variable_name("missing")
    container.add_node("IsNaN", [x], [missing], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node("Where", [missing, fill, x], [operator.outputs[0].full_name], name=scope.get_unique_operator_name("Where"))


def register_imputer() -> None:
    from sklearn.impute import SimpleImputer
    from skl2onnx import update_registered_converter
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes

    update_registered_converter(
        SimpleImputer, "PreflightSimpleImputer", calculate_sklearn_imputer_output_shapes, convert_imputer
    )
