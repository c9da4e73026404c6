"""scikit-learn's HistGradientBoostingRegressor as an ONNX-ML tree ensemble.

The pinned skl2onnx fails on scikit-learn 1.9's trees, so the package maps
each fitted predictor's nodes onto `TreeEnsembleRegressor` attributes
itself. scikit-learn decides a split in float64:

    NaN               -> left if missing_go_to_left else right
    x <= num_threshold -> left, else right

which is ONNX-ML's `BRANCH_LEQ` with `nodes_missing_value_tracks_true`
(the true branch is the left one). With a double input the thresholds are
written as doubles (`nodes_values_as_tensor`, opset 3), and the ensemble
decides exactly as training did; with a float input each threshold is
rounded down to float32, which is exact for inputs that are float32 values.
The raw score is the baseline plus each tree's leaf; a log link adds `Exp`.
Native categorical splits are refused before export (`export.py`).
"""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

# The links whose inverse the export knows: identity (squared, absolute and
# quantile losses) and log (Poisson and gamma).
LINKS = ("IdentityLink", "LogLink")


def link_of(est) -> str:
    return type(est._loss.link).__name__


def floor_f32(values: np.ndarray) -> np.ndarray:
    """Each float64 rounded down to the largest float32 not above it."""
    rounded = values.astype(np.float32)
    above = rounded.astype(np.float64) > values
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def tree_attributes(est, double: bool) -> dict:
    """The `TreeEnsembleRegressor` attributes of a fitted single-target
    HistGradientBoosting model."""
    ids, nodes, features, modes, thresholds, true_ids, false_ids, missing = ([] for _ in range(8))
    leaf_trees, leaf_nodes, weights = [], [], []
    for tree_id, iteration in enumerate(est._predictors):
        (predictor,) = iteration
        for node_id, node in enumerate(predictor.nodes):
            ids.append(tree_id)
            nodes.append(node_id)
            if node["is_leaf"]:
                features.append(0)
                modes.append("LEAF")
                thresholds.append(0.0)
                true_ids.append(0)
                false_ids.append(0)
                missing.append(0)
                leaf_trees.append(tree_id)
                leaf_nodes.append(node_id)
                weights.append(float(node["value"]))
            else:
                features.append(int(node["feature_idx"]))
                modes.append("BRANCH_LEQ")
                thresholds.append(float(node["num_threshold"]))
                true_ids.append(int(node["left"]))
                false_ids.append(int(node["right"]))
                missing.append(int(node["missing_go_to_left"]))
    values = np.asarray(thresholds, dtype=np.float64)
    base = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(-1)
    attrs = {
        "n_targets": 1,
        "aggregate_function": "SUM",
        "post_transform": "NONE",
        "nodes_treeids": ids,
        "nodes_nodeids": nodes,
        "nodes_featureids": features,
        "nodes_modes": modes,
        "nodes_truenodeids": true_ids,
        "nodes_falsenodeids": false_ids,
        "nodes_missing_value_tracks_true": missing,
        "target_treeids": leaf_trees,
        "target_nodeids": leaf_nodes,
        "target_ids": [0] * len(leaf_nodes),
    }
    if double:
        attrs["nodes_values_as_tensor"] = numpy_helper.from_array(values, "nodes_values")
        attrs["target_weights_as_tensor"] = numpy_helper.from_array(np.asarray(weights), "target_weights")
        attrs["base_values_as_tensor"] = numpy_helper.from_array(base, "base_values")
    else:
        attrs["nodes_values"] = floor_f32(values).tolist()
        attrs["target_weights"] = weights
        attrs["base_values"] = base.tolist()
    return attrs


def convert_hist_regressor(scope, operator, container):
    """skl2onnx's converter signature: the ensemble from the operator's
    concatenated input to its `[N, 1]` output."""
    from skl2onnx.common.data_types import DoubleTensorType

    est = operator.raw_operator
    double = isinstance(operator.inputs[0].type, DoubleTensorType)
    attrs = tree_attributes(est, double)
    attrs["name"] = scope.get_unique_operator_name("TreeEnsembleRegressor")
    link = link_of(est)
    raw = operator.outputs[0].full_name if link == "IdentityLink" else scope.get_unique_variable_name("raw")
    container.add_node(
        "TreeEnsembleRegressor",
        operator.inputs[0].full_name,
        raw,
        op_domain="ai.onnx.ml",
        op_version=3,
        **attrs,
    )
    if link == "LogLink":
        container.add_node("Exp", raw, operator.outputs[0].full_name, name=scope.get_unique_operator_name("Exp"))


def register() -> None:
    """Puts this converter in place of skl2onnx's own."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes

    update_registered_converter(
        HistGradientBoostingRegressor,
        "PreflightHistGradientBoostingRegressor",
        calculate_linear_regressor_output_shapes,
        convert_hist_regressor,
    )


__all__ = ["LINKS", "convert_hist_regressor", "floor_f32", "link_of", "register", "tree_attributes"]
