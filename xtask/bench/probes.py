"""`cargo xtask bench probes`: how many export defects the probe rows catch,
against as many random rows, on a corpus of broken exports.

For each learner, a pipeline is trained on one city's orders (the fixtures'
data, `fixtures/generate/cities.py`) and exported as the Python package
exports it. The probe rows are made from that clean export and 500 training
rows, as `write_bundle` makes them; the random rows are as many fresh orders
of the same city. Each defect is an edit of the clean graph, as a broken
converter would write it:

- `thresholds-float32`: a float64 export's thresholds rounded to float32;
- `threshold-float32`: one of them (20 splits drawn at random among those
  on a float input whose threshold float32 moves: an integer input has no
  value between 2.5000000000000004 and 2.5);
- `missing-other-way`: one tree's splits on the nullable input send a
  missing value the other way (a model that sees NaN: no imputer);
- `category-shifted`: the one-hot encoder's categories shifted by one;
- `leaf-changed`: one leaf of one tree off by one minute (20 leaves drawn
  at random).

A defect is caught by a set of rows when one of them answers beyond the
fixtures' parity tolerance from the training process's prediction, as the
parity suite judges. Prints a Markdown table for `benches/README.md`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python" / "src"))
sys.path.insert(0, str(ROOT / "fixtures" / "generate"))

from cities import CITIES, VEHICLES, orders  # noqa: E402
from generate import INPUTS, PASSTHROUGH, TARGET  # noqa: E402
from lightgbm import LGBMRegressor  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder  # noqa: E402

from preflight_bundle.export import export_onnx, run_onnx, with_precision  # noqa: E402
from preflight_bundle.probes import DEFAULT_BUDGET, probe_rows  # noqa: E402

FEATURES = [i.name for i in INPUTS]
ABS, REL = 7e-4, 1e-5  # the Lisbon fixture's parity tolerance
LEAVES = 20
#: Probe rows per model, and as many random rows: `write_bundle`'s default unless given.
BUDGET = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_BUDGET
SAMPLES = 500


def pipeline(learner: str) -> tuple[Pipeline, str]:
    """The learner in the fixtures' preprocessing, and its export's precision."""
    numbers = PASSTHROUGH
    vehicle = ("vehicle", OneHotEncoder(categories=[VEHICLES], handle_unknown="ignore"), ["vehicle"])
    if learner == "hist-gbdt":
        # Sees missing preparation times itself: no imputer.
        pre = ColumnTransformer([("num", "passthrough", ["prep_time_min", *numbers]), vehicle])
        return Pipeline([("pre", pre), ("model", HistGradientBoostingRegressor(max_iter=100, random_state=0))]), "float64"
    pre = ColumnTransformer(
        [("prep", SimpleImputer(strategy="median"), ["prep_time_min"]), ("num", "passthrough", numbers), vehicle]
    )
    if learner == "lightgbm":
        model = LGBMRegressor(n_estimators=100, max_depth=6, num_leaves=48, random_state=0, n_jobs=1, verbose=-1)
        return Pipeline([("pre", pre), ("model", model)]), "float64"
    model = GradientBoostingRegressor(n_estimators=100, max_depth=5, learning_rate=0.1, random_state=0)
    return Pipeline([("pre", pre), ("model", model)]), "float32"


def ensemble(model: onnx.ModelProto) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor")


def attribute(node: onnx.NodeProto, name: str) -> onnx.AttributeProto:
    return next(a for a in node.attribute if a.name == name)


def edited(model: onnx.ModelProto, edit) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    edit(out)
    return out


def double_thresholds(model: onnx.ModelProto) -> np.ndarray | None:
    node = ensemble(model)
    if not any(a.name == "nodes_values_as_tensor" for a in node.attribute):
        return None
    return numpy_helper.to_array(attribute(node, "nodes_values_as_tensor").t)


def thresholds_float32(model: onnx.ModelProto, which: np.ndarray) -> onnx.ModelProto:
    """The float64 thresholds at `which` rounded to float32."""

    def edit(m):
        a = attribute(ensemble(m), "nodes_values_as_tensor")
        values = numpy_helper.to_array(a.t).copy()
        values[which] = values[which].astype(np.float32).astype(np.float64)
        a.t.CopyFrom(numpy_helper.from_array(values, a.t.name))

    return edited(model, edit)


def missing_other_way(model: onnx.ModelProto, column: int, tree: int) -> onnx.ModelProto | None:
    node = ensemble(model)
    features = list(attribute(node, "nodes_featureids").ints)
    trees = list(attribute(node, "nodes_treeids").ints)
    modes = list(attribute(node, "nodes_modes").strings)
    chosen = [n for n, (f, t, m) in enumerate(zip(features, trees, modes)) if f == column and t == tree and m != b"LEAF"]
    if not chosen:
        return None

    def edit(m):
        a = attribute(ensemble(m), "nodes_missing_value_tracks_true")
        values = list(a.ints) or [0] * len(features)
        for n in chosen:
            values[n] = 1 - values[n]
        del a.ints[:]
        a.ints.extend(values)

    return edited(model, edit)


def category_shifted(model: onnx.ModelProto) -> onnx.ModelProto:
    def edit(m):
        encoder = next(n for n in m.graph.node if n.op_type == "OneHotEncoder")
        a = attribute(encoder, "cats_strings")
        shifted = list(a.strings[1:]) + [a.strings[0]]
        del a.strings[:]
        a.strings.extend(shifted)

    return edited(model, edit)


def leaf_changed(model: onnx.ModelProto, index: int) -> onnx.ModelProto:
    def edit(m):
        node = ensemble(m)
        if any(a.name == "target_weights_as_tensor" for a in node.attribute):
            a = attribute(node, "target_weights_as_tensor")
            values = numpy_helper.to_array(a.t).copy()
            values[index] += 1.0
            a.t.CopyFrom(numpy_helper.from_array(values, a.t.name))
        else:
            a = attribute(node, "target_weights")
            a.floats[index] += 1.0

    return edited(model, edit)


def corpus(model: onnx.ModelProto, rng: np.random.Generator, nullable_column: int | None, float_columns: set[int]):
    """(kind, defect graph) for each defect of the corpus this export admits."""
    doubles = double_thresholds(model)
    if doubles is not None:
        yield "thresholds-float32", thresholds_float32(model, np.arange(len(doubles)))
        columns = np.asarray(attribute(ensemble(model), "nodes_featureids").ints)
        on_floats = np.isin(columns, sorted(float_columns))
        moved = np.flatnonzero((doubles.astype(np.float32).astype(np.float64) != doubles) & on_floats)
        for which in rng.choice(moved, size=min(LEAVES, len(moved)), replace=False):
            yield "threshold-float32", thresholds_float32(model, np.array([which]))
    if nullable_column is not None:
        trees = sorted(set(attribute(ensemble(model), "nodes_treeids").ints))
        for tree in rng.choice(trees, size=10, replace=False):
            other_way = missing_other_way(model, nullable_column, int(tree))
            if other_way is not None:
                yield "missing-other-way", other_way
    yield "category-shifted", category_shifted(model)
    node = ensemble(model)
    weights = len(attribute(node, "target_ids").ints)
    for index in rng.choice(weights, size=LEAVES, replace=False):
        yield "leaf-changed", leaf_changed(model, int(index))


def caught(model, inputs, frame, expected) -> bool:
    served = run_onnx(model, frame, inputs, TARGET).reshape(-1)
    return bool((~(np.abs(served - expected) <= ABS + REL * np.abs(expected))).any())


def main() -> None:
    city = CITIES["lisbon"]
    data = orders(city, 8000 + SAMPLES, np.random.default_rng(11))
    fresh = orders(city, BUDGET, np.random.default_rng(12))
    x, y = data[FEATURES].iloc[:8000], data[TARGET].iloc[:8000]
    samples = data[FEATURES].iloc[8000:].reset_index(drop=True)
    table: dict[tuple[str, str], list[int]] = {}
    for learner in ("sklearn-gbdt", "lightgbm", "hist-gbdt"):
        pipe, precision = pipeline(learner)
        pipe.fit(x, y)
        inputs = with_precision(INPUTS, precision)
        clean = export_onnx(pipe, inputs, TARGET, precision=precision)
        probes = probe_rows(clean, samples, inputs, BUDGET)
        rows = {"probes": probes.frame, "random": fresh[FEATURES].iloc[: len(probes.frame)].reset_index(drop=True)}
        expected = {k: pipe.predict(v) for k, v in rows.items()}
        for k in rows:
            if caught(clean, inputs, rows[k], expected[k]):
                sys.exit(f"{learner}: the clean export already disagrees on the {k} rows")
        # The nullable input reaches the trees as itself only without an imputer.
        nullable = 0 if learner == "hist-gbdt" else None
        rng = np.random.default_rng(7)
        floats = {a["column"] for a in probes.at if a["input"] in {i.name for i in INPUTS if i.datatype == "FP32"}}
        for kind, broken in corpus(clean, rng, nullable, floats):
            tally = table.setdefault((learner, kind), [0, 0, 0])
            tally[0] += 1
            tally[1] += caught(broken, inputs, rows["probes"], expected["probes"])
            tally[2] += caught(broken, inputs, rows["random"], expected["random"])
        print(
            f"{learner}: {len(probes.frame)} probe rows at {probes.probed} of {probes.thresholds} thresholds, "
            f"either side of {probes.reached} of {probes.splits} splits",
            file=sys.stderr,
        )
    print(f"| learner | defect | defects | caught by the probe rows | caught by as many random rows |")
    print("| --- | --- | --- | --- | --- |")
    for (learner, kind), (n, by_probes, by_random) in table.items():
        print(f"| {learner} | {kind} | {n} | {by_probes} | {by_random} |")


if __name__ == "__main__":
    main()
