"""write_bundle for every supported estimator family, and its refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import BOOSTED, FAMILIES, LINEAR, ROOT, VEHICLES, fitted, needs_binaries, orders, preflight_binary, preprocessing, regressor
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from preflight_bundle import (
    Contract,
    Parity,
    ParityError,
    Quality,
    UnsupportedStep,
    check_bundle,
    write_bundle,
)
from preflight_bundle.__main__ import main as cli



def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write_repository(root: Path, data, compact: bool) -> dict:
    """One bundle per family under `root` (per boosted family, compact)."""
    x, y, xh, yh = data
    written = {}
    for family in BOOSTED if compact else FAMILIES:
        written[family] = write_bundle(
            fitted(family, x, y),
            root / f"eta-{family}" / "1",
            train=(x, y),
            holdout=(xh, yh),
            samples=50,
            description=f"ETA ({family})",
            inputs={"hour": {"min": 0, "max": 23}},
            output_range=(0.0, 300.0),
            quiet=True,
            compact_trees=compact,
        )
    return written


@pytest.fixture(scope="module")
def repository(tmp_path_factory, data):
    """One bundle per exported family, written once for the module."""
    root = tmp_path_factory.mktemp("models")
    return root, _write_repository(root, data, compact=False)


@pytest.fixture(scope="module")
def compact_repository(tmp_path_factory, data):
    """The same bundles with their trees in ONNX-ML opset 5 form."""
    root = tmp_path_factory.mktemp("compact-models")
    return root, _write_repository(root, data, compact=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_exports_a_bundle_that_checks(repository, family):
    root, written = repository
    bundle = root / f"eta-{family}" / "1"
    checked = check_bundle(bundle)
    assert checked.warnings == []
    assert written[family].onnx_max_abs_err < 1e-3
    files = sorted(p.name for p in bundle.iterdir())
    probes = [] if family == "sklearn-linear" else ["probes.jsonl"]
    assert files == sorted(["fallback.json", "holdout.jsonl", "manifest.toml", "model.onnx", "reference.json", "samples.jsonl", *probes])
    if probes:
        assert 0 < len(read_rows(bundle / "probes.jsonl")) <= 2000
    manifest = tomllib.loads((bundle / "manifest.toml").read_text())
    packages = manifest["producer"]["packages"]
    assert {"scikit-learn", "skl2onnx", "onnx", "onnxruntime"} <= set(packages)
    if family in ("lightgbm", "xgboost"):
        assert {family, "onnxmltools"} <= set(packages)
    # Every budget the caller left out is suggested, and said so.
    assert set(manifest["contract"]) == {"parity", "latency", "size", "quality", "fallback"}
    assert len(written[family].suggested) == 5
    assert len(read_rows(bundle / "samples.jsonl")) == 50
    assert len(read_rows(bundle / "holdout.jsonl")) == 200


def test_inferred_schema(repository):
    root, _ = repository
    manifest = tomllib.loads((root / "eta-sklearn-gbdt" / "1" / "manifest.toml").read_text())
    inputs = {i["name"]: i for i in manifest["inputs"]}
    # The DataFrame's column order, the datatypes its dtypes map to.
    assert [i["name"] for i in manifest["inputs"]] == ["distance_km", "hour", "vehicle", "prep_time_min"]
    assert inputs["distance_km"]["datatype"] == "FP32"
    assert "nullable" not in inputs["distance_km"]
    assert inputs["hour"] == {"name": "hour", "datatype": "INT64", "min": 0, "max": 23}  # overridden
    assert inputs["vehicle"]["datatype"] == "BYTES"
    assert inputs["vehicle"]["categories"] == VEHICLES
    assert manifest["outputs"] == [{"name": "eta_minutes", "datatype": "FP32", "min": 0.0, "max": 300.0}]


def test_nulls_are_declared_and_written_as_null(repository):
    root, _ = repository
    bundle = root / "eta-xgboost" / "1"
    manifest = tomllib.loads((bundle / "manifest.toml").read_text())
    prep = next(i for i in manifest["inputs"] if i["name"] == "prep_time_min")
    assert prep["nullable"] is True
    rows = read_rows(bundle / "holdout.jsonl")
    assert any(r["inputs"]["prep_time_min"] is None for r in rows)
    reference = json.loads((bundle / "reference.json").read_text())
    assert 0 < reference["inputs"]["prep_time_min"]["null_fraction"] < 1


def test_an_imputed_column_is_nullable_even_without_nulls_in_training(tmp_path, data):
    x, y, xh, yh = data
    x = x.assign(prep_time_min=x["prep_time_min"].fillna(12.0))
    xh = xh.assign(prep_time_min=xh["prep_time_min"].fillna(12.0))
    write_bundle(fitted("sklearn-gbdt", x, y), tmp_path / "m" / "1", train=(x, y), holdout=(xh, yh), samples=20, quiet=True)
    manifest = tomllib.loads((tmp_path / "m" / "1" / "manifest.toml").read_text())
    prep = next(i for i in manifest["inputs"] if i["name"] == "prep_time_min")
    assert prep["nullable"] is True


def test_categories_reach_fallback_and_reference(repository):
    root, _ = repository
    bundle = root / "eta-sklearn-gbdt" / "1"
    fallback = json.loads((bundle / "fallback.json").read_text())
    assert list(fallback["categorical"]["vehicle"]) == VEHICLES + ["__other__"]
    assert set(fallback["numeric"]) == {"distance_km", "hour", "prep_time_min"}
    assert fallback["clip"] == [0.0, 300.0]
    reference = json.loads((bundle / "reference.json").read_text())
    shares = reference["inputs"]["vehicle"]["categories"]
    assert list(shares) == VEHICLES and abs(sum(shares.values()) - 1) < 1e-3


def test_a_category_seen_only_in_the_holdout_is_declared(tmp_path, data):
    x, y, xh, yh = data
    xh = xh.copy()
    xh.loc[xh.index[0], "vehicle"] = "walk"
    write_bundle(fitted("sklearn-gbdt", x, y), tmp_path / "m" / "1", train=(x, y), holdout=(xh, yh), samples=20, quiet=True)
    manifest = tomllib.loads((tmp_path / "m" / "1" / "manifest.toml").read_text())
    vehicle = next(i for i in manifest["inputs"] if i["name"] == "vehicle")
    assert vehicle["categories"] == VEHICLES + ["walk"]


def test_samples_record_training_and_fallback_predictions(repository, data):
    root, _ = repository
    bundle = root / "eta-lightgbm" / "1"
    rows = read_rows(bundle / "samples.jsonl")
    assert all(set(r) == {"id", "inputs", "outputs", "fallback_outputs"} for r in rows)
    assert rows[0]["id"] == "s0000"


def test_given_budgets_are_kept_and_quality_max_is_filled_in(tmp_path, data):
    x, y, xh, yh = data
    written = write_bundle(
        fitted("sklearn-gbdt", x, y),
        tmp_path / "m" / "4",
        train=(x, y),
        holdout=(xh, yh),
        samples=20,
        contract=Contract(parity=Parity(abs=1e-3, rel=1e-4), quality=Quality("rmse")),
        quiet=True,
    )
    contract = tomllib.loads((tmp_path / "m" / "4" / "manifest.toml").read_text())["contract"]
    assert contract["parity"] == {"abs": 1e-3, "rel": 1e-4}
    assert contract["quality"]["metric"] == "rmse"
    assert contract["quality"]["max"] >= written.holdout_metrics["rmse"]
    assert not any(s.startswith("contract.parity") for s in written.suggested)


def test_breaking_changes_are_written_as_the_contract_names_them(tmp_path, data):
    x, y, xh, yh = data
    change = "vehicle: category 'moto' removed"
    write_bundle(
        fitted("sklearn-gbdt", x, y),
        tmp_path / "m" / "2",
        train=(x, y),
        holdout=(xh, yh),
        samples=20,
        contract={"breaking": [change]},
        quiet=True,
    )
    manifest = (tmp_path / "m" / "2" / "manifest.toml").read_text()
    assert tomllib.loads(manifest)["contract"]["breaking"] == [change]
    assert check_bundle(tmp_path / "m" / "2").manifest.contract["breaking"] == [change]
    with pytest.raises(ValueError, match="breaking is a list of changes"):
        Contract.of({"breaking": change})


def test_a_scaler_before_the_trees_exports(tmp_path, data):
    x, y, xh, yh = data
    write_bundle(fitted("sklearn-gbdt", x, y, scaled=True), tmp_path / "m" / "1", train=(x, y), holdout=(xh, yh), samples=50, quiet=True)
    check_bundle(tmp_path / "m" / "1")


def _epochs(family: str):
    """Epoch seconds, scaled in float64 in training: as FP32, whose 128-second
    steps at 1.7e9 hide the minute the target depends on, the export cannot
    tell the rows apart."""
    rng = np.random.default_rng(0)
    n = 400
    epoch = 1.7e9 + rng.integers(0, 1200, n).astype(np.float64)
    x = pd.DataFrame({"epoch_s": epoch, "vehicle": pd.Series(rng.choice(VEHICLES, n), dtype=object)})
    y = pd.Series(10.0 + 20.0 * ((epoch % 600) >= 300) + rng.normal(0, 0.1, n), name="eta_minutes")
    pipe = Pipeline(
        [
            ("pre", ColumnTransformer([("t", StandardScaler(), ["epoch_s"]), ("v", OneHotEncoder(), ["vehicle"])])),
            ("model", regressor(family)),
        ]
    ).fit(x, y)
    return pipe, x, y


@pytest.mark.parametrize("family", FAMILIES)
def test_parity_refusal_names_the_worst_rows_and_the_input(tmp_path, family):
    pipe, x, y = _epochs(family)
    with pytest.raises(ParityError) as caught:
        write_bundle(
            pipe, tmp_path / "m" / "1", train=(x, y), holdout=(x.head(100), y.head(100)), samples=50, quiet=True,
            precision="float32",
        )
    message = str(caught.value)
    assert "disagrees with the training process" in message
    assert "Worst rows" in message and "sample row" in message and "epoch_s" in message
    assert set(caught.value.inputs) <= {"epoch_s", "vehicle"}
    assert list(caught.value.worst.columns[:3]) == ["row", "epoch_s", "vehicle"]
    # Nothing is written: the refusal comes before the first file.
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_float64_is_chosen_when_float32_disagrees(tmp_path, family):
    """The epochs that no float32 export can tell apart are exact in float64:
    FP64 inputs, the scaler in double, and each split as the learner makes it."""
    pipe, x, y = _epochs(family)
    written = write_bundle(pipe, tmp_path / "m" / "1", train=(x, y), holdout=(x.head(100), y.head(100)), samples=50, quiet=True)
    assert written.precision == "float64"
    assert "the float32 export disagreed with the training process on" in written.precision_note
    assert "bytes" in written.precision_note and "us of single-row p50" in written.precision_note
    text = (tmp_path / "m" / "1" / "manifest.toml").read_text()
    manifest = tomllib.loads(text)
    assert {i["name"]: i["datatype"] for i in manifest["inputs"]} == {"epoch_s": "FP64", "vehicle": "BYTES"}
    assert "# precision float64: the float32 export disagreed" in text
    check_bundle(tmp_path / "m" / "1")


def test_xgboost_after_a_scaler_is_refused_in_float32_and_exact_in_float64(tmp_path, data):
    """XGBoost splits at float32 data values; a scaler computed in float32 by
    the export and in float64 in training moves such a row across the split.
    The float64 export scales in double and rounds to float32 before the
    trees, as XGBoost does."""
    x, y, _, _ = data
    pipe = fitted("xgboost", x, y, scaled=True)
    with pytest.raises(ParityError) as caught:
        write_bundle(pipe, tmp_path / "m" / "1", train=(x, y), samples=600, quiet=True, precision="float32")
    assert "hour" in caught.value.inputs
    written = write_bundle(pipe, tmp_path / "m" / "1", train=(x, y), samples=600, quiet=True)
    assert written.precision == "float64"


@pytest.mark.parametrize(
    "make, step",
    [
        (
            lambda: Pipeline(
                [
                    ("pre", ColumnTransformer([("log", FunctionTransformer(np.log1p), ["distance_km"]), ("v", OneHotEncoder(), ["vehicle"])])),
                    ("model", GradientBoostingRegressor(n_estimators=5)),
                ]
            ),
            "pipeline step 'pre' › transformer 'log' (FunctionTransformer)",
        ),
        (
            lambda: Pipeline(
                [
                    (
                        "pre",
                        ColumnTransformer(
                            [("num", Pipeline([("impute", SimpleImputer()), ("bins", _binner())]), ["distance_km"])]
                        ),
                    ),
                    ("model", GradientBoostingRegressor(n_estimators=5)),
                ]
            ),
            "pipeline step 'pre' › transformer 'num' › step 'bins' (KBinsDiscretizer)",
        ),
        (
            lambda: Pipeline(
                [
                    ("pre", ColumnTransformer([("v", OneHotEncoder(min_frequency=5), ["vehicle"])])),
                    ("model", GradientBoostingRegressor(n_estimators=5)),
                ]
            ),
            "pipeline step 'pre' › transformer 'v' (OneHotEncoder)",
        ),
        (
            lambda: Pipeline(
                [
                    ("pre", ColumnTransformer([("d", "passthrough", ["distance_km"])])),
                    ("knn", KNeighborsRegressor(n_neighbors=3)),
                ]
            ),
            "pipeline step 'knn' (KNeighborsRegressor)",
        ),
        (
            lambda: Pipeline(
                [
                    ("pre", ColumnTransformer([("v", OneHotEncoder(), ["vehicle"])], remainder="passthrough")),
                    ("model", GradientBoostingRegressor(n_estimators=5)),
                ]
            ),
            "pipeline step 'pre' (ColumnTransformer)",
        ),
        (lambda: GradientBoostingRegressor(n_estimators=5), "the model (GradientBoostingRegressor)"),
    ],
)
def test_unsupported_steps_are_refused_by_name(tmp_path, data, make, step):
    x, y, _, _ = data
    x = x.assign(prep_time_min=x["prep_time_min"].fillna(12.0))
    model = make()
    model.fit(x if isinstance(model, Pipeline) else x[["distance_km", "hour"]], y)
    with pytest.raises(UnsupportedStep) as caught:
        write_bundle(model, tmp_path / "m" / "1", train=(x, y), samples=10, quiet=True)
    assert str(caught.value).startswith(step), str(caught.value)
    assert "faithfully" in str(caught.value) or "write_bundle takes" in str(caught.value)
    assert not (tmp_path / "m" / "1").exists()


def _binner():
    from sklearn.preprocessing import KBinsDiscretizer

    return KBinsDiscretizer(n_bins=3, encode="ordinal", quantile_method="averaged_inverted_cdf")


@pytest.mark.parametrize("family", LINEAR)
def test_each_linear_model_exports_a_bundle_that_checks(tmp_path, data, family):
    x, y, xh, yh = data
    written = write_bundle(fitted(family, x, y), tmp_path / "m" / "1", train=(x, y), holdout=(xh, yh), samples=50, quiet=True)
    assert written.onnx_max_abs_err < 1e-3
    check_bundle(tmp_path / "m" / "1")


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_hist_gradient_boosting_splits_as_training_missing_values_included(loss):
    """The package's own converter of HistGradientBoosting: in float64 every
    row, nulls sent left or right as each split learnt, answers as training."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from preflight_bundle.export import export_onnx, run_onnx, with_precision
    from preflight_bundle.schema import infer_input

    x, y = orders(800, 3)
    y = y.clip(lower=1.0)
    pipe = Pipeline(
        [
            ("pre", preprocessing().set_params(prep="passthrough")),
            ("model", HistGradientBoostingRegressor(loss=loss, max_iter=40, random_state=0)),
        ]
    ).fit(x, y)
    assert x["prep_time_min"].isna().any()
    schema = with_precision([infer_input(c, [x], imputed=c == "prep_time_min") for c in x.columns], "float64")
    model = export_onnx(pipe, schema, "eta_minutes", precision="float64")
    assert np.allclose(run_onnx(model, x, schema, "eta_minutes"), pipe.predict(x), rtol=1e-6, atol=1e-4)


def test_hist_gradient_boosting_native_categories_are_refused_with_the_reason(tmp_path, data):
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, y, _, _ = data
    x = x.assign(vehicle=x["vehicle"].astype("category"))
    pipe = Pipeline(
        [
            ("pre", ColumnTransformer([("pass", "passthrough", ["distance_km", "vehicle"])]).set_output(transform="pandas")),
            ("model", HistGradientBoostingRegressor(max_iter=5, categorical_features="from_dtype")),
        ]
    ).fit(x, y)
    with pytest.raises(UnsupportedStep, match="native categorical splits .* one-hot encode the column instead"):
        write_bundle(pipe, tmp_path / "m" / "1", train=(x, y), samples=10, quiet=True)


def test_wrong_folder_and_existing_bundle_are_refused(tmp_path, data):
    x, y, _, _ = data
    pipe = fitted("sklearn-gbdt", x, y)
    with pytest.raises(ValueError, match="last two folders are 'eta/latest'"):
        write_bundle(pipe, tmp_path / "eta" / "latest", name="eta", version=1, train=(x, y), quiet=True)
    with pytest.raises(ValueError, match="not a valid model name"):
        write_bundle(pipe, tmp_path / "ETA" / "1", train=(x, y), quiet=True)
    write_bundle(pipe, tmp_path / "eta" / "1", train=(x, y), samples=10, quiet=True)
    with pytest.raises(FileExistsError):
        write_bundle(pipe, tmp_path / "eta" / "1", train=(x, y), samples=10, quiet=True)


def test_text_with_missing_values_is_refused(tmp_path, data):
    x, y, _, _ = data
    x = x.copy()
    x.loc[x.index[3], "vehicle"] = None
    pipe = fitted("sklearn-gbdt", x.fillna({"vehicle": "car"}), y)
    with pytest.raises(ValueError, match="input 'vehicle' has missing values, but a BYTES input cannot be null"):
        write_bundle(pipe, tmp_path / "m" / "1", train=(x, y), quiet=True)


def test_cli_check(repository, capsys):
    root, _ = repository
    assert cli(["check", str(root)]) == 0
    assert cli(["check", str(Path(__file__).parent / "errors" / "samples-wrong-type" / "1")]) == 1
    out = capsys.readouterr().out
    assert "'hour' is a string, but the datatype is INT64" in out


def test_the_committed_fixtures_check():
    for folder in [ROOT / "fixtures" / "models", ROOT / "fixtures" / "defects" / "bundles" / "worse-model"]:
        assert cli(["check", str(folder)]) == 0


@needs_binaries
@pytest.mark.parametrize("trees", ["repository", "compact_repository"])
def test_preflight_verify_passes_the_written_bundles(request, trees, tmp_path):
    root, _ = request.getfixturevalue(trees)
    env = dict(os.environ)
    env.setdefault("ORT_DYLIB_PATH", str(ROOT / "target" / "ort" / "libonnxruntime.so"))
    models = tmp_path / "models"
    shutil.copytree(root, models)
    # pytest's folders are the user's alone; the container's user reads the repository too.
    models.chmod(0o755)
    # As a container where `cargo xtask test` built the image, as the gate verifies; else as a process.
    image = os.environ.get("PREFLIGHT_IMAGE")
    target = f"container={image}" if image else "process"
    result = subprocess.run(
        [str(preflight_binary()), "verify", "--models", str(models), "--target", target, "--out", str(tmp_path / "report")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Release PASSED" in result.stdout + result.stderr


def _outputs(model: Path, x: pd.DataFrame) -> np.ndarray:
    """The model's answers to the rows of `x`, one run per row."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    kinds = {"tensor(string)": object, "tensor(int64)": np.int64, "tensor(float)": np.float32}
    feed = {i.name: x[i.name].to_numpy().astype(kinds[i.type]).reshape(-1, 1) for i in session.get_inputs()}
    rows = [session.run(None, {k: v[j : j + 1] for k, v in feed.items()})[0] for j in range(len(x))]
    return np.concatenate(rows)


@pytest.mark.parametrize("family", BOOSTED)
def test_compact_trees_answer_bit_for_bit_in_opset_5_form(repository, compact_repository, data, family):
    import onnx

    x, _, xh, _ = data
    root, _ = repository
    bundle = compact_repository[0] / f"eta-{family}" / "1"
    assert check_bundle(bundle).warnings == []
    model = onnx.load(bundle / "model.onnx")
    ops = {(n.domain, n.op_type) for n in model.graph.node}
    assert ("ai.onnx.ml", "TreeEnsemble") in ops
    assert ("ai.onnx.ml", "TreeEnsembleRegressor") not in ops
    assert {o.domain: o.version for o in model.opset_import}["ai.onnx.ml"] == 5
    rows = pd.concat([x.head(100), xh.head(100)])
    compact = _outputs(bundle / "model.onnx", rows)
    original = _outputs(root / f"eta-{family}" / "1" / "model.onnx", rows)
    assert np.array_equal(compact, original)


def test_an_ensemble_of_another_form_is_refused_by_name():
    from onnx import TensorProto, helper

    from preflight_bundle.compact import NotCompactable, compact_trees

    forest = helper.make_node(
        "TreeEnsembleRegressor",
        ["x"],
        ["y"],
        name="forest",
        domain="ai.onnx.ml",
        aggregate_function="AVERAGE",
        nodes_treeids=[0],
        nodes_nodeids=[0],
        nodes_modes=["LEAF"],
    )
    graph = helper.make_graph(
        [forest],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 3)])
    with pytest.raises(NotCompactable, match="TreeEnsembleRegressor 'forest': aggregate function AVERAGE"):
        compact_trees(model)
