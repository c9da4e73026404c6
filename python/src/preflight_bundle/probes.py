"""Probe rows at the split thresholds of the exported trees (`probes.jsonl`).

A tree ensemble exported in float32 answers differently from its float64
training process only for rows that fall between a threshold and its rounded
value; random samples rarely land there. A probe row is a verification sample
with one input moved to just either side of one split:

- a number: the two neighbouring values of the input's datatype where the
  tree's column crosses the threshold (found by bisection through the
  exported graph's own preprocessing, so a scaler, an imputer or a cast is
  followed as the served model computes it), then one step further out;
- a category (a one-hot column): the sample with each of the input's
  categories;
- a nullable input the tree splits on: the sample with the input null, which
  takes the split's missing-value branch.

A probe starts from a row whose path reaches the split: a sample, or an
earlier probe, which reaches splits on its side that no sample does. Within
the budget, every threshold gets its probes first (the most-visited first),
then the nullable inputs' nulls, then every split not yet probed from a row
that reaches it, then the further steps (`probe_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import pandas as pd
from onnx import helper, numpy_helper

from .export import session
from .parts import write_jsonl
from .schema import Input, onnx_feed, row_inputs

#: How many probe rows a bundle carries unless told otherwise.
DEFAULT_BUDGET = 2000
_ENSEMBLES = ("TreeEnsembleRegressor", "TreeEnsembleClassifier", "TreeEnsemble")
#: The comparisons whose sides a number crosses; EQ and NEQ are not probed.
_ABOVE_IS_FALSE = {"BRANCH_LEQ": True, "BRANCH_LT": True, "BRANCH_GT": False, "BRANCH_GTE": False}
_OPSET5_MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]


@dataclass
class Split:
    """One interior node of one tree."""

    column: int
    threshold: float
    mode: str
    missing_true: bool
    #: Child keys in the ensemble's node table; None for a leaf.
    true_child: int | None
    false_child: int | None


@dataclass
class Ensemble:
    """One tree ensemble of the graph: the tensor it reads and its splits."""

    input: str
    splits: dict[int, Split]
    roots: list[int]


@dataclass
class Probes:
    """What `probe_rows` chose: the rows, and how many splits they reach."""

    frame: pd.DataFrame
    #: One `{"input", "column", "threshold"}` per row.
    at: list[dict] = field(default_factory=list)
    #: Distinct thresholds, and how many of them have a probe row.
    thresholds: int = 0
    probed: int = 0
    #: Splits (nodes of the trees), and how many a probe row was sent
    #: either side of from a row whose path reaches it.
    splits: int = 0
    reached: int = 0


def ensembles(model: onnx.ModelProto) -> list[Ensemble]:
    """Every tree ensemble of the graph, in ONNX-ML opset 1/3 or 5 form."""
    found = []
    for node in model.graph.node:
        if node.domain != "ai.onnx.ml" or node.op_type not in _ENSEMBLES:
            continue
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        found.append(_opset5(node.input[0], a) if node.op_type == "TreeEnsemble" else _opset1(node.input[0], a))
    return found


def _values(a: dict, name: str) -> np.ndarray:
    if name in a:
        return np.asarray(a[name], dtype=np.float64)
    return numpy_helper.to_array(a[f"{name}_as_tensor"]).astype(np.float64)


def _opset1(input_name: str, a: dict) -> Ensemble:
    keys = list(zip(a["nodes_treeids"], a["nodes_nodeids"]))
    index = {k: n for n, k in enumerate(keys)}
    values = _values(a, "nodes_values")
    missing = a.get("nodes_missing_value_tracks_true") or [0] * len(keys)
    modes = [m.decode() if isinstance(m, bytes) else m for m in a["nodes_modes"]]
    splits, children = {}, set()
    for n, (tree, _) in enumerate(keys):
        if modes[n] == "LEAF":
            continue
        true_child = index[(tree, a["nodes_truenodeids"][n])]
        false_child = index[(tree, a["nodes_falsenodeids"][n])]
        children.update((true_child, false_child))
        splits[n] = Split(a["nodes_featureids"][n], float(values[n]), modes[n], bool(missing[n]), true_child, false_child)
    for split in splits.values():
        split.true_child = split.true_child if split.true_child in splits else None
        split.false_child = split.false_child if split.false_child in splits else None
    roots = [n for n in range(len(keys)) if n not in children and n in splits]
    return Ensemble(input_name, splits, roots)


def _opset5(input_name: str, a: dict) -> Ensemble:
    values = numpy_helper.to_array(a["nodes_splits"]).astype(np.float64)
    modes = numpy_helper.to_array(a["nodes_modes"])
    missing = a.get("nodes_missing_value_tracks_true") or [0] * len(values)
    splits = {}
    for n in range(len(values)):
        true_child = None if a["nodes_trueleafs"][n] else a["nodes_truenodeids"][n]
        false_child = None if a["nodes_falseleafs"][n] else a["nodes_falsenodeids"][n]
        mode = _OPSET5_MODES[int(modes[n])]
        splits[n] = Split(a["nodes_featureids"][n], float(values[n]), mode, bool(missing[n]), true_child, false_child)
    return Ensemble(input_name, splits, list(a["tree_roots"]))


def _goes_true(split: Split, x: np.ndarray) -> np.ndarray:
    t = x.dtype.type(split.threshold)
    with np.errstate(invalid="ignore"):
        result = {
            "BRANCH_LEQ": x <= t,
            "BRANCH_LT": x < t,
            "BRANCH_GTE": x >= t,
            "BRANCH_GT": x > t,
            "BRANCH_EQ": x == t,
            "BRANCH_NEQ": x != t,
        }[split.mode]
    if split.missing_true:
        result = result | np.isnan(x)
    return result


def reach(ensemble: Ensemble, matrix: np.ndarray) -> dict[int, np.ndarray]:
    """For each split, which rows of `matrix` (the ensemble's input) reach it."""
    reached = {}
    stack = [(root, np.arange(len(matrix))) for root in ensemble.roots]
    while stack:
        key, rows = stack.pop()
        reached[key] = rows
        split = ensemble.splits[key]
        true = _goes_true(split, matrix[rows, split.column])
        for child, chosen in ((split.true_child, rows[true]), (split.false_child, rows[~true])):
            if child is not None:
                stack.append((child, chosen))
    return reached


class _Graph:
    """The exported graph, run with the ensembles' inputs as extra outputs."""

    def __init__(self, model: onnx.ModelProto, inputs: list[Input], tensors: list[str]):
        extended = onnx.ModelProto()
        extended.CopyFrom(model)
        known = {o.name for o in extended.graph.output}
        extended.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors if t not in known)
        self.session = session(extended)
        self.inputs = inputs
        self.tensors = tensors

    def columns(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.tensors, onnx_feed(frame, self.inputs))
        return {t: np.asarray(v) for t, v in zip(self.tensors, outputs)}


def _dependencies(graph: _Graph, samples: pd.DataFrame, tensor: str, inputs: list[Input]) -> dict[int, str]:
    """Which input each column of the ensemble's input depends on, where
    exactly one does: found by moving each input's values between samples."""
    base = graph.columns(samples)[tensor]
    found: dict[int, set[str]] = {}
    for i in inputs:
        moved = samples.copy()
        values = samples[i.name].to_numpy()
        for shift in range(1, len(samples)):
            rolled = np.roll(values, shift)
            if not pd.Series(rolled).equals(pd.Series(values)):
                break
        moved[i.name] = pd.Series(rolled, index=samples.index).astype(samples[i.name].dtype)
        changed = ~np.isclose(graph.columns(moved)[tensor], base, equal_nan=True).all(axis=0)
        for column in np.flatnonzero(changed):
            found.setdefault(int(column), set()).add(i.name)
    return {c: next(iter(names)) for c, names in found.items() if len(names) == 1}


# Ordered integer keys of floats, so that bisection walks representable values.
def _key(x: np.ndarray, dtype) -> np.ndarray:
    ints = np.asarray(x, dtype=dtype).view(np.int32 if dtype == np.float32 else np.int64).astype(np.int64)
    magnitude = ints & (0x7FFFFFFF if dtype == np.float32 else 0x7FFFFFFFFFFFFFFF)
    return np.where(ints < 0, -magnitude, magnitude)


def _value(key: np.ndarray, dtype) -> np.ndarray:
    sign = np.int64(0x80000000) if dtype == np.float32 else np.int64(-(2**63))
    bits = np.where(key < 0, (-key) | sign, key)
    if dtype == np.float32:
        return bits.astype(np.uint32).view(np.float32).astype(np.float64)
    return bits.astype(np.int64).view(np.float64)


def _crossings(graph, base: pd.DataFrame, tensor, column, spec: Input, bounds, thresholds, above_false):
    """For each threshold, the two neighbouring values of `spec`'s datatype
    between which the column crosses it, or None where it does not in bounds."""
    dtype = {"FP32": np.float32, "FP64": np.float64}.get(spec.datatype)
    lo_value, hi_value = bounds
    if dtype is None:
        lo, hi = np.full(len(thresholds), int(np.ceil(lo_value))), np.full(len(thresholds), int(np.floor(hi_value)))
        to_value = lambda k: k.astype(np.int64)  # noqa: E731
    else:
        lo, hi = _key(np.full(len(thresholds), lo_value), dtype), _key(np.full(len(thresholds), hi_value), dtype)
        to_value = lambda k: _value(k, dtype)  # noqa: E731
    rows = pd.concat([base] * len(thresholds), ignore_index=True)

    def beyond(keys):
        rows[spec.name] = pd.Series(to_value(keys)).astype(base[spec.name].dtype)
        x = graph.columns(rows)[tensor][:, column].astype(np.float64)
        return np.where(above_false, x > thresholds, x >= thresholds)

    at_lo = beyond(lo)
    crossing = at_lo != beyond(hi)
    # Bisect for the first key whose side differs from the low end's.
    while True:
        open_ = crossing & (hi - lo > 1)
        if not open_.any():
            break
        mid = np.where(open_, lo + (hi - lo) // 2, lo)
        moved = beyond(mid) != at_lo
        hi = np.where(open_ & moved, mid, hi)
        lo = np.where(open_ & ~moved, mid, lo)
    return [(to_value(np.array([l]))[0], to_value(np.array([h]))[0], l, h) if c else None for l, h, c in zip(lo, hi, crossing)], to_value


def probe_rows(
    model: onnx.ModelProto, samples: pd.DataFrame, inputs: list[Input], budget: int = DEFAULT_BUDGET
) -> Probes:
    """Probe rows for the tree ensembles of `model`, from `samples`, at most
    `budget` of them; an empty frame where the graph has no tree ensemble.

    In passes, each while the budget lasts: every threshold from the sample
    that reaches most of its splits; the nullable inputs' splits; then every
    split not yet probed from a row that reaches it, a sample or an earlier
    probe (so that a probe's own path reaches splits no sample does); then
    one step further out on each side."""
    samples = samples.reset_index(drop=True)
    found = ensembles(model)
    if not found or budget <= 0 or samples.empty:
        return Probes(samples.iloc[:0])
    specs = {i.name: i for i in inputs}
    graph = _Graph(model, inputs, sorted({e.input for e in found}))
    groups = _groups(found, graph, samples, inputs, specs)
    crossings = _all_crossings(graph, samples, groups, specs)
    plan = _Plan(samples, budget)
    covered: set[tuple[int, int]] = set()
    first: dict[tuple, int] = {}
    reached = _reach(found, graph, plan.pool())
    ordered = sorted(groups.items(), key=lambda kv: (-_weight(kv[1], reached), kv[0][1], kv[0][2]))
    for ordinal, (key, g) in enumerate(ordered):
        base = _best_base(g["nodes"], reached, covered)
        first[key] = base if base is not None else ordinal % len(samples)
        plan.add(first[key], _moves(key, g, specs, crossings), g["at"])
        if base is not None:
            covered.update(n for n in g["nodes"] if base in reached.get(n, ()))
    for ordinal, (key, g) in enumerate(ordered):
        if specs[g["input"]].nullable:
            base = _best_base(g["nodes"], reached, set())
            base = ordinal % len(samples) if base is None else base
            plan.add(base, [{g["input"]: None}], g["at"])
    # Each round probes from the rows the one before added, until one adds none.
    pooled = 0
    for _ in range(8):
        if plan.full() or len(plan.rows) == pooled:
            break
        pooled = len(plan.rows)
        reached = _reach(found, graph, plan.pool())
        for key, g in ordered:
            while not plan.full():
                base = _best_base(g["nodes"], reached, covered)
                if base is None:
                    break
                plan.add(base, _moves(key, g, specs, crossings), g["at"])
                covered.update(n for n in g["nodes"] if base in reached.get(n, ()))
    for key, g in ordered:
        crossing = crossings.get(key)
        if crossing is not None:
            plan.add(first[key], [{g["input"]: v} for v in crossing[2:] if v is not None], g["at"])
    splits = sum(len(g["nodes"]) for g in groups.values())
    return plan.probes(inputs, thresholds=len(groups), reached=len(covered), splits=splits)


def _groups(found, graph, samples, inputs, specs) -> dict[tuple, dict]:
    """The splits grouped by threshold: (tensor, column, threshold, above
    is false) -> the input it moves, the splits, and what a probe names."""
    groups: dict[tuple, dict] = {}
    for e_index, e in enumerate(found):
        depends = _dependencies(graph, samples, e.input, inputs)
        for key, split in e.splits.items():
            name = depends.get(split.column)
            if name is None:
                continue
            if specs[name].datatype != "BYTES" and split.mode not in _ABOVE_IS_FALSE:
                continue
            group = groups.setdefault(
                (e.input, split.column, split.threshold, _ABOVE_IS_FALSE.get(split.mode, True)),
                {"input": name, "nodes": [], "at": {"input": name, "column": int(split.column), "threshold": float(split.threshold)}},
            )
            group["nodes"].append((e_index, key))
    return groups


def _reach(found, graph, pool: pd.DataFrame) -> dict[tuple[int, int], set[int]]:
    """For each split of each ensemble, the rows of `pool` that reach it."""
    matrices = graph.columns(pool)
    reached = {}
    for e_index, e in enumerate(found):
        for key, rows in reach(e, matrices[e.input]).items():
            reached[(e_index, key)] = set(rows.tolist())
    return reached


def _weight(group: dict, reached) -> int:
    return len(set().union(*(reached.get(n, set()) for n in group["nodes"])))


def _best_base(nodes, reached, covered) -> int | None:
    """The row that reaches most of `nodes` not yet covered; None if no row does."""
    counts: dict[int, int] = {}
    for n in nodes:
        if n not in covered:
            for row in reached.get(n, ()):
                counts[row] = counts.get(row, 0) + 1
    if not counts:
        return None
    return min(counts, key=lambda row: (-counts[row], row))


def _moves(key, g, specs, crossings) -> list[dict]:
    """The changes that put a row either side of a split: the crossing
    values of a number, every category of a category."""
    spec = specs[g["input"]]
    if spec.datatype == "BYTES":
        return [{spec.name: c} for c in spec.categories or ()]
    crossing = crossings.get(key)
    return [] if crossing is None else [{spec.name: crossing[0]}, {spec.name: crossing[1]}]


class _Plan:
    """The probe rows chosen so far, each a row of the pool (samples, then
    probes) with some inputs changed; a probe joins the pool it came from."""

    def __init__(self, samples: pd.DataFrame, budget: int):
        self.samples = samples
        self.budget = budget
        self.rows: list[dict] = []
        self.at: list[dict] = []
        self.seen: set = set()

    def full(self) -> bool:
        return len(self.rows) >= self.budget

    def pool(self) -> pd.DataFrame:
        if not self.rows:
            return self.samples
        probes = pd.DataFrame(self.rows, columns=self.samples.columns)
        return pd.concat([self.samples, probes.astype(self.samples.dtypes.to_dict(), errors="ignore")], ignore_index=True)

    def _row(self, index: int) -> dict:
        if index < len(self.samples):
            return self.samples.iloc[index].to_dict()
        return dict(self.rows[index - len(self.samples)])

    def add(self, base: int, moves: list[dict], at: dict) -> None:
        for changes in moves:
            if self.full():
                return
            row = self._row(base)
            row.update({k: (np.nan if v is None else v) for k, v in changes.items()})
            signature = tuple((k, str(v)) for k, v in row.items())
            if signature in self.seen:
                continue
            self.seen.add(signature)
            self.rows.append(row)
            self.at.append(at)

    def probes(self, inputs: list[Input], **counts) -> Probes:
        frame = pd.DataFrame(self.rows, columns=self.samples.columns)
        for i in inputs:
            if i.datatype != "BYTES":
                frame[i.name] = frame[i.name].astype(self.samples[i.name].dtype)
        probed = {(a["input"], a["column"], a["threshold"]) for a in self.at}
        return Probes(frame, list(self.at), probed=len(probed), **counts)


def _all_crossings(graph: _Graph, samples: pd.DataFrame, groups: dict, specs) -> dict:
    """Each numeric group's crossing: (below, above, one further below, one further above)."""
    by_column: dict[tuple, list] = {}
    for (tensor, column, threshold, above_false), g in groups.items():
        spec = specs[g["input"]]
        if spec.datatype != "BYTES":
            by_column.setdefault((tensor, column, g["input"]), []).append((threshold, above_false))
    result = {}
    for (tensor, column, name), keys in by_column.items():
        spec = specs[name]
        present = samples[name].dropna()
        lo = spec.min if spec.min is not None else float(present.min())
        hi = spec.max if spec.max is not None else float(present.max())
        thresholds = np.array([t for t, _ in keys])
        above_false = np.array([a for _, a in keys])
        found, to_value = _crossings(graph, samples.iloc[[0]], tensor, column, spec, (lo, hi), thresholds, above_false)
        for (threshold, af), crossing in zip(keys, found):
            if crossing is None:
                continue
            below, above, lo_key, hi_key = crossing
            further_below = to_value(np.array([lo_key - 1]))[0] if below > lo else None
            further_above = to_value(np.array([hi_key + 1]))[0] if above < hi else None
            result[(tensor, column, threshold, af)] = (below, above, further_below, further_above)
    return result


def write_probes(path, probes: Probes | None, task, pipe, inputs: list[Input]) -> None:
    """probes.jsonl: each probe row, the training process's prediction, and
    the split it sits at; nothing where there are no probes."""
    if probes is None or probes.frame.empty:
        return
    outputs = task.output_rows(task.expected(pipe, probes.frame))
    rows = [
        {"id": f"p{n:04d}", "inputs": row_inputs(r, inputs), "outputs": outputs[n], "probe": probes.at[n]}
        for n, (_, r) in enumerate(probes.frame.iterrows())
    ]
    write_jsonl(path, rows, inputs, task.outputs)
