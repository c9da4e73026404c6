"""write_bundle for every classifier family: labels and probabilities
exported with ZipMap off, samples with the training process's `predict` and
`predict_proba`, the logistic or softmax fallback, and the refusals."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib

import numpy as np
import pandas as pd
import pytest
from conftest import needs_binaries, orders, preflight_binary, preprocessing
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from preflight_bundle import UnsupportedStep, check_bundle, write_bundle
from preflight_bundle.check import evaluate_fallback


def classifier(family: str):
    if family == "sklearn-gbdt-classifier":
        return GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0)
    if family == "sklearn-forest-classifier":
        return RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0, n_jobs=1)
    if family == "sklearn-extra-trees-classifier":
        return ExtraTreesClassifier(n_estimators=10, max_depth=6, random_state=0, n_jobs=1)
    if family == "sklearn-logistic":
        return LogisticRegression(max_iter=2000)
    if family == "lightgbm-classifier":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(n_estimators=20, max_depth=3, num_leaves=8, random_state=0, n_jobs=1, verbose=-1)
    if family == "xgboost-classifier":
        from xgboost import XGBClassifier

        return XGBClassifier(n_estimators=20, max_depth=3, random_state=0, n_jobs=1)
    raise ValueError(family)


FAMILIES = [
    "sklearn-gbdt-classifier",
    "sklearn-forest-classifier",
    "sklearn-extra-trees-classifier",
    "sklearn-logistic",
    "lightgbm-classifier",
    "xgboost-classifier",
]


def _probes(family: str) -> int:
    """LightGBM's classifier agrees with training neither in float32 beside
    its splits nor in float64 (test_probes.py): it is written without probes,
    which accepts that."""
    return 0 if family == "lightgbm-classifier" else 2000


def late(n: int, seed: int, labels) -> tuple[pd.DataFrame, pd.Series]:
    """Orders, and whether each took longer than a promise, as `labels`."""
    x, minutes = orders(n, seed)
    promise = 14 + 3.5 * x["distance_km"]
    return x, pd.Series(np.where(minutes > promise, labels[1], labels[0]), name="late")


def vehicles(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Orders and their vehicle, three classes, as integers (XGBoost's need)."""
    x, _ = orders(n, seed)
    y = pd.Series(x["vehicle"].map({"bicycle": 0, "car": 1, "motorbike": 2}), name="vehicle")
    return x.drop(columns=["vehicle"]).assign(vehicle=x["vehicle"]), y


def fitted(family, x, y):
    return Pipeline([("pre", preprocessing()), ("model", classifier(family))]).fit(x, y)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("labels", [("on_time", "late"), (0, 1)], ids=["strings", "integers"])
def test_each_binary_classifier_writes_a_bundle_that_checks(tmp_path, family, labels):
    if family == "xgboost-classifier" and isinstance(labels[0], str):
        pytest.skip("XGBoost takes integer labels only")
    x, y = late(600, 1, labels)
    xh, yh = late(200, 2, labels)
    pipe = fitted(family, x, y)
    probes = _probes(family)
    written = write_bundle(pipe, tmp_path / "late" / "1", train=(x, y), holdout=(xh, yh), samples=60, probes=probes, quiet=True)
    bundle = tmp_path / "late" / "1"
    checked = check_bundle(bundle)
    manifest = tomllib.loads((bundle / "manifest.toml").read_text())
    classes = [c.item() if hasattr(c, "item") else c for c in pipe.steps[-1][1].classes_]
    assert manifest["model"]["task"] == "classification"
    assert manifest["model"]["classes"] == classes
    assert manifest["outputs"] == [
        {"name": "label", "datatype": "INT64" if isinstance(labels[0], int) else "BYTES"},
        {"name": "probabilities", "datatype": "FP32", "min": 0.0, "max": 1.0, "shape": [-1, 2]},
    ]
    assert [q["metric"] for q in manifest["contract"]["quality"]] == ["accuracy", "log_loss"]
    assert manifest["contract"]["fallback"]["metric"] == "log_loss"
    # The samples carry the training process's predict and predict_proba.
    rows = [json.loads(line) for line in (bundle / "samples.jsonl").read_text().splitlines()]
    sample = checked.samples[0]
    assert sample["outputs"][0] in classes and len(sample["outputs"][1]) == 2
    assert abs(sum(sample["outputs"][1]) - 1.0) < 1e-6
    assert set(rows[0]) == {"id", "inputs", "outputs", "fallback_outputs"}
    # The hold-out's target is the label alone.
    hold = json.loads((bundle / "holdout.jsonl").read_text().splitlines()[0])
    assert list(hold["target"]) == ["label"]
    # The logistic fallback, as Preflight evaluates it, gives the recorded probabilities.
    fallback = json.loads((bundle / "fallback.json").read_text())
    assert fallback["kind"] == "logistic" and fallback["output"] == "probabilities"
    for row in rows[:10]:
        p = evaluate_fallback(fallback, [], row["inputs"])
        assert np.allclose(p, row["fallback_outputs"]["probabilities"], atol=1e-9)
    assert written.holdout_metrics.keys() >= {"accuracy", "log_loss", "brier", "roc_auc"}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_multiclass_classifier_writes_a_bundle_with_a_softmax_fallback(tmp_path, family):
    x, y = vehicles(600, 3)
    xh, yh = vehicles(200, 4)
    features = ["distance_km", "hour", "prep_time_min"]
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer

    pre = ColumnTransformer([("prep", SimpleImputer(strategy="median"), ["prep_time_min"]), ("num", "passthrough", features[:2])])
    pipe = Pipeline([("pre", pre), ("model", classifier(family))]).fit(x[features], y)
    write_bundle(
        pipe, tmp_path / "vehicle" / "1", train=(x[features], y), holdout=(xh[features], yh), samples=60,
        probes=_probes(family), quiet=True,
    )
    bundle = tmp_path / "vehicle" / "1"
    check_bundle(bundle)
    manifest = tomllib.loads((bundle / "manifest.toml").read_text())
    assert manifest["model"]["classes"] == [0, 1, 2]
    assert manifest["outputs"][1]["shape"] == [-1, 3]
    fallback = json.loads((bundle / "fallback.json").read_text())
    assert fallback["kind"] == "softmax" and len(fallback["intercept"]) == 3


def test_boolean_classes_are_refused_with_what_to_do(tmp_path):
    x, y = late(300, 5, (False, True))
    pipe = fitted("sklearn-logistic", x, y.astype(bool))
    with pytest.raises(UnsupportedStep, match="boolean classes: encode the target as 0 and 1"):
        write_bundle(pipe, tmp_path / "late" / "1", train=(x, y.astype(bool)), samples=20, quiet=True)


def test_a_classifier_takes_no_output_range(tmp_path):
    x, y = late(300, 5, ("on_time", "late"))
    pipe = fitted("sklearn-logistic", x, y)
    with pytest.raises(ValueError, match="a classifier's probabilities lie in \\[0, 1\\]"):
        write_bundle(pipe, tmp_path / "late" / "1", train=(x, y), samples=20, output_range=(0, 1), quiet=True)


@needs_binaries
def test_preflight_verify_passes_the_written_classifiers(tmp_path):
    """Every suite judges the classifiers the package writes, as the gate
    does: as a container where `cargo xtask test` built the image."""
    models = tmp_path / "models"
    for family in FAMILIES:
        labels = (0, 1) if family == "xgboost-classifier" else ("on_time", "late")
        x, y = late(600, 1, labels)
        xh, yh = late(200, 2, labels)
        write_bundle(fitted(family, x, y), models / f"late-{family}" / "1", train=(x, y), holdout=(xh, yh), samples=60, probes=_probes(family), quiet=True)
    # pytest's folders are the user's alone; the container's user reads the repository too.
    models.chmod(0o755)
    env = dict(os.environ)
    image = env.get("PREFLIGHT_IMAGE")
    target = f"container={image}" if image else "process"
    result = subprocess.run(
        [str(preflight_binary()), "verify", "--models", str(models), "--target", target, "--out", str(tmp_path / "report")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    for model in report["models"]:
        quality = next(s for s in model["suites"] if s["suite"] == "quality")
        assert {"accuracy", "log_loss", "roc_auc", "brier"} <= set(quality["metrics"]), model["name"]
