"""Tree ensembles in the compact form of ONNX-ML opset 5.

skl2onnx and onnxmltools write a tree ensemble as `TreeEnsembleRegressor`
(ONNX-ML opset 1 or 3): one attribute list per node field, the node modes as
strings, the leaves as separate lists. A session made from the ONNX file keeps
those lists in its graph beside the trees it builds from them: a 200-tree GBDT
of depth 6 (21,600 nodes) holds about 4.4 MiB per session, whatever the session
options (arena, memory patterns, prepacking). The same trees as `TreeEnsemble`
(ONNX-ML opset 5: interior nodes only, packed tensors, the modes as bytes)
hold about 1.9 MiB, in a file a third the size that loads twice as fast.
(`preflight-serve` makes its sessions from ONNX Runtime's own format, which
keeps no graph: either form holds about 0.9 MiB there.) The trees, thresholds
and leaf weights are the same values, summed in the same order, so the answers
are bit-for-bit the same; `write_bundle` still checks parity on the written
file.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

#: The ONNX-ML opset of `TreeEnsemble`, which the pinned ONNX Runtime (1.32.0) runs.
OPSET = 5

_MODES = {b"BRANCH_LEQ": 0, b"BRANCH_LT": 1, b"BRANCH_GTE": 2, b"BRANCH_GT": 3, b"BRANCH_EQ": 4, b"BRANCH_NEQ": 5}


class NotCompactable(ValueError):
    """A `TreeEnsembleRegressor` this rewrite does not take; the model is left as it was."""


def compact_trees(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with each single-target, summed
    `TreeEnsembleRegressor` as an opset-5 `TreeEnsemble` (plus an `Add` of
    its base value, where it has one). A model without one comes back
    unchanged; one of another form raises `NotCompactable` naming it."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    changed = False
    for node in out.graph.node:
        if node.domain == "ai.onnx.ml" and node.op_type == "TreeEnsembleRegressor":
            nodes.extend(_rewrite(node, out.graph))
            changed = True
        else:
            nodes.append(node)
    if not changed:
        return out
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    for opset in out.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = max(opset.version, OPSET)
    return out


def _rewrite(node: onnx.NodeProto, graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    where = f"TreeEnsembleRegressor '{node.name or node.output[0]}'"

    def refuse(why: str) -> NotCompactable:
        return NotCompactable(f"{where}: {why}; left in its opset-3 form")

    if a.get("n_targets", 1) != 1:
        raise refuse(f"{a['n_targets']} targets (only single-target ensembles are rewritten)")
    if a.get("aggregate_function", b"SUM") != b"SUM":
        raise refuse(f"aggregate function {a['aggregate_function'].decode()}")
    if a.get("post_transform", b"NONE") != b"NONE":
        raise refuse(f"post transform {a['post_transform'].decode()}")
    if any(k.endswith("_as_tensor") for k in a):
        raise refuse("double-precision attributes")

    trees, ids = a["nodes_treeids"], a["nodes_nodeids"]
    modes, features, splits = a["nodes_modes"], a["nodes_featureids"], a["nodes_values"]
    true_ids, false_ids = a["nodes_truenodeids"], a["nodes_falsenodeids"]
    missing = a.get("nodes_missing_value_tracks_true") or [0] * len(trees)
    at = {(t, n): k for k, (t, n) in enumerate(zip(trees, ids))}
    weights: dict[tuple[int, int], float] = {}
    for t, n, target, w in zip(a["target_treeids"], a["target_nodeids"], a["target_ids"], a["target_weights"]):
        if target != 0:
            raise refuse(f"a leaf weight for target {target}")
        if (t, n) in weights:
            raise refuse(f"tree {t} node {n} has more than one weight")
        weights[(t, n)] = w

    interior = [k for k, m in enumerate(modes) if m != b"LEAF"]
    unknown = {modes[k] for k in interior} - set(_MODES)
    if unknown:
        raise refuse(f"node modes {sorted(m.decode() for m in unknown)}")
    index = {k: i for i, k in enumerate(interior)}
    leaves: list[float] = []
    leaf_index: dict[int, int] = {}

    def child(tree: int, node_id: int) -> tuple[int, int]:
        """The child's index among interior nodes or leaves, and 1 for a leaf."""
        k = at[(tree, node_id)]
        if modes[k] != b"LEAF":
            return index[k], 0
        if k not in leaf_index:
            leaf_index[k] = len(leaves)
            leaves.append(weights.get((tree, node_id), 0.0))
        return leaf_index[k], 1

    roots: list[int] = []
    seen: set[int] = set()
    for t in trees:
        if t in seen:
            continue
        seen.add(t)
        root = at[(t, 0)]
        if modes[root] == b"LEAF":
            raise refuse(f"tree {t} is a single leaf")
        roots.append(index[root])
    true_nodes, true_leafs, false_nodes, false_leafs = [], [], [], []
    for k in interior:
        i, leaf = child(trees[k], true_ids[k])
        true_nodes.append(i)
        true_leafs.append(leaf)
        i, leaf = child(trees[k], false_ids[k])
        false_nodes.append(i)
        false_leafs.append(leaf)

    base = a.get("base_values") or [0.0]
    summed = node.output[0] + "_trees" if base[0] != 0.0 else node.output[0]
    trees_node = helper.make_node(
        "TreeEnsemble",
        list(node.input),
        [summed],
        name=node.name,
        domain="ai.onnx.ml",
        aggregate_function=1,
        post_transform=0,
        n_targets=1,
        tree_roots=roots,
        nodes_featureids=[features[k] for k in interior],
        nodes_modes=helper.make_tensor("nodes_modes", TensorProto.UINT8, [len(interior)], [_MODES[modes[k]] for k in interior]),
        nodes_splits=helper.make_tensor("nodes_splits", TensorProto.FLOAT, [len(interior)], [splits[k] for k in interior]),
        nodes_truenodeids=true_nodes,
        nodes_trueleafs=true_leafs,
        nodes_falsenodeids=false_nodes,
        nodes_falseleafs=false_leafs,
        nodes_missing_value_tracks_true=[missing[k] for k in interior],
        leaf_targetids=[0] * len(leaves),
        leaf_weights=helper.make_tensor("leaf_weights", TensorProto.FLOAT, [len(leaves)], leaves),
    )
    if summed == node.output[0]:
        return [trees_node]
    # The opset-3 operator adds its base value after the sum, in FP32; so does this.
    name = node.output[0] + "_base"
    graph.initializer.append(helper.make_tensor(name, TensorProto.FLOAT, [1], [base[0]]))
    return [trees_node, helper.make_node("Add", [summed, name], [node.output[0]], name=name + "_add")]
