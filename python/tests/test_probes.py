"""Probe rows at the trees' split thresholds: where they sit, what they catch,
and what write_bundle does with them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import fitted, orders

from preflight_bundle import ParityError, write_bundle
from preflight_bundle.export import export_onnx, with_precision
from preflight_bundle.probes import _Graph, ensembles, probe_rows, reach
from preflight_bundle.schema import Input

INPUTS = [
    Input("distance_km", "FP32", min=0.0, max=50.0),
    Input("hour", "INT64", min=0, max=23),
    Input("vehicle", "BYTES", categories=("bicycle", "car", "motorbike")),
    Input("prep_time_min", "FP32", min=0.0, max=240.0, nullable=True),
]


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def data():
    return orders(2000, 1), orders(300, 2)


def test_each_probe_is_an_earlier_row_with_one_input_moved_to_a_side_of_its_split(data):
    (x, y), _ = data
    pipe = fitted("sklearn-gbdt", x, y, scaled=True)
    model = export_onnx(pipe, INPUTS, "eta_minutes")
    samples = x.iloc[:200].reset_index(drop=True)
    probes = probe_rows(model, samples, INPUTS, budget=1500)
    assert 0 < len(probes.frame) <= 1500
    assert probes.probed <= probes.thresholds
    # Within this budget every split is probed from a row that reaches it.
    assert probes.reached == probes.splits
    (ensemble,) = ensembles(model)
    graph = _Graph(model, INPUTS, [ensemble.input])
    columns = graph.columns(probes.frame)[ensemble.input]
    names = [i.name for i in INPUTS]
    text = lambda frame: frame[names].astype(str).to_numpy()  # noqa: E731
    pool = np.vstack([text(samples), text(probes.frame)])
    sides = {}
    for n, at in enumerate(probes.at):
        # A sample, or a probe before this one, that differs at most in the probe's input.
        others = [k for k, name in enumerate(names) if name != at["input"]]
        earlier = pool[: len(samples) + n][:, others]
        assert (earlier == pool[len(samples) + n, others]).all(axis=1).any(), f"probe {n} moved more than {at['input']}"
        if at["input"] == "distance_km":
            key = (at["column"], at["threshold"])
            sides.setdefault(key, set()).add(bool(columns[n, at["column"]] > np.float32(at["threshold"])))
    # Each distance split probed has a row on either side of it.
    assert sides and all(s == {True, False} for s in sides.values())


def test_probes_reach_splits_no_sample_reaches(data):
    """From five samples, earlier probes lead the later ones down paths no
    sample takes, until every split has a row either side of it."""
    (x, y), _ = data
    model = export_onnx(fitted("sklearn-gbdt", x, y, scaled=True), INPUTS, "eta_minutes")
    samples = x.iloc[:5].reset_index(drop=True)
    (ensemble,) = ensembles(model)
    matrix = _Graph(model, INPUTS, [ensemble.input]).columns(samples)[ensemble.input]
    by_samples = sum(1 for rows in reach(ensemble, matrix).values() if len(rows))
    probes = probe_rows(model, samples, INPUTS, budget=5000)
    assert by_samples < probes.splits
    assert probes.reached == probes.splits


def test_a_lightgbm_export_in_float32_is_refused_at_its_splits(data, tmp_path):
    """LightGBM compares float64 inputs with float64 thresholds; float32
    rounds both, and rows between a threshold and its rounded value, which
    the 2-decimal samples never reach, answer differently."""
    (x, y), (xh, yh) = data
    pipe = fitted("lightgbm", x, y)
    with pytest.raises(ParityError, match=r"probe rows beyond the parity tolerance"):
        write_bundle(pipe, tmp_path / "eta" / "1", train=(x, y), holdout=(xh, yh), precision="float32", quiet=True)
    written = write_bundle(pipe, tmp_path / "eta" / "2", train=(x, y), holdout=(xh, yh), quiet=True)
    assert written.precision == "float64"
    assert "probe rows" in written.precision_note
    rows = read_rows(written.path / "probes.jsonl")
    assert len(rows) == len(written.probes.frame) > 0
    assert all(r["id"].startswith("p") and set(r["probe"]) == {"input", "column", "threshold"} for r in rows)
    assert {r["probe"]["input"] for r in rows} >= {"distance_km", "prep_time_min", "vehicle"}


def test_without_trees_or_budget_no_probes_are_written(data, tmp_path):
    (x, y), (xh, yh) = data
    linear = write_bundle(fitted("sklearn-linear", x, y), tmp_path / "a" / "1", train=(x, y), holdout=(xh, yh), quiet=True)
    assert not (linear.path / "probes.jsonl").exists()
    trees = fitted("sklearn-gbdt", x, y)
    none = write_bundle(trees, tmp_path / "b" / "1", train=(x, y), holdout=(xh, yh), probes=0, quiet=True)
    assert not (none.path / "probes.jsonl").exists()


def test_the_budget_reaches_every_split_first_then_steps_further(data):
    (x, y), _ = data
    pipe = fitted("sklearn-hist-gbdt", x, y)
    inputs = with_precision(INPUTS, "float64")
    model = export_onnx(pipe, inputs, "eta_minutes", precision="float64")
    samples = x.iloc[:200].reset_index(drop=True)
    small = probe_rows(model, samples, inputs, budget=50)
    large = probe_rows(model, samples, inputs, budget=100_000)
    assert len(small.frame) == 50
    # Every distance split inside the input's bounds is probed, and gets its further steps.
    column = next(a["column"] for a in large.at if a["input"] == "distance_km")
    (ensemble,) = ensembles(model)
    splits = {s.threshold for s in ensemble.splits.values() if s.column == column and 0.0 < s.threshold < 50.0}
    probed = [a["threshold"] for a in large.at if a["input"] == "distance_km"]
    assert set(probed) == splits
    assert len(probed) >= 3 * len(splits), "two crossing rows and at least one further step each"
    assert small.probed < large.probed


def test_a_lightgbm_classifier_is_refused_until_its_splits_are_accepted(tmp_path):
    """Its float32 export answers otherwise beside the splits and its float64
    export on hold-out rows; the refusal says how to accept the former."""
    from lightgbm import LGBMClassifier
    from sklearn.pipeline import Pipeline

    from conftest import preprocessing

    x, minutes = orders(600, 1)
    y = (minutes > 14 + 3.5 * x["distance_km"]).astype(int)
    xh, minutes_h = orders(200, 2)
    yh = (minutes_h > 14 + 3.5 * xh["distance_km"]).astype(int)
    model = LGBMClassifier(n_estimators=20, max_depth=3, num_leaves=8, random_state=0, n_jobs=1, verbose=-1)
    pipe = Pipeline([("pre", preprocessing()), ("model", model)]).fit(x, y)
    with pytest.raises(ParityError, match=r"probe rows .*write_bundle\(probes=0\)"):
        write_bundle(pipe, tmp_path / "late" / "1", train=(x, y), holdout=(xh, yh), quiet=True)
    written = write_bundle(pipe, tmp_path / "late" / "2", train=(x, y), holdout=(xh, yh), probes=0, quiet=True)
    assert written.precision == "float32"
    assert not (written.path / "probes.jsonl").exists()
