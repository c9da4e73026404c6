"""ONNX export of scikit-learn pipelines, and the refusal of steps that no
converter here reproduces faithfully.

A supported pipeline is `ColumnTransformer` of SimpleImputer,
OneHotEncoder, StandardScaler, "passthrough" and "drop" (alone or chained
in a Pipeline), followed by one of the estimators of `ESTIMATORS`. Anything
else is refused before export with the step's place in the pipeline named,
and so is a step whose converter fails.

Two precisions. `float32` is what the converters write: FP32 inputs and
float arithmetic throughout. `float64` takes FP64 inputs, runs the
preprocessing in double, and splits each tree as its learner does in
training: scikit-learn's trees and XGBoost round their input to float32
first (so the export does too, with a `Cast` to float and back before the
ensemble), LightGBM and HistGradientBoosting split float64 values on float64
thresholds (so the export writes its thresholds as doubles). `write_bundle`
tries float32 first and float64 when float32 disagrees with training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from . import double, hist
from .compact import compact_trees
from .schema import Input, onnx_feed

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
PRECISIONS = ("float32", "float64")


class UnsupportedStep(ValueError):
    """A pipeline step the exporter cannot convert faithfully; `step` is its place."""

    def __init__(self, step: str, message: str):
        self.step = step
        super().__init__(f"{step}: {message}")


@dataclass(frozen=True)
class Estimator:
    """What the exporter knows of a final estimator.

    `splits` is how the learner compares a value at a split in training:
    "float32" when it rounds its input to float32 first (scikit-learn's
    trees, XGBoost), "float64" when it compares float64 values (LightGBM,
    HistGradientBoosting), None for a model without splits.
    """

    family: str
    task: str
    splits: str | None
    packages: tuple[str, ...] = ()


_LGBM = ("lightgbm", "onnxmltools")
_XGB = ("xgboost", "onnxmltools")

# By the estimator's module root and class name: the support matrix.
ESTIMATORS = {
    ("sklearn", "GradientBoostingRegressor"): Estimator("sklearn-gbdt", "regression", "float32"),
    ("sklearn", "RandomForestRegressor"): Estimator("sklearn-forest", "regression", "float32"),
    ("sklearn", "ExtraTreesRegressor"): Estimator("sklearn-extra-trees", "regression", "float32"),
    ("sklearn", "HistGradientBoostingRegressor"): Estimator("sklearn-hist-gbdt", "regression", "float64"),
    ("sklearn", "LinearRegression"): Estimator("sklearn-linear", "regression", None),
    ("sklearn", "Ridge"): Estimator("sklearn-linear", "regression", None),
    ("sklearn", "Lasso"): Estimator("sklearn-linear", "regression", None),
    ("sklearn", "ElasticNet"): Estimator("sklearn-linear", "regression", None),
    ("lightgbm", "LGBMRegressor"): Estimator("lightgbm", "regression", "float64", _LGBM),
    ("xgboost", "XGBRegressor"): Estimator("xgboost", "regression", "float32", _XGB),
    ("sklearn", "GradientBoostingClassifier"): Estimator("sklearn-gbdt-classifier", "classification", "float32"),
    ("sklearn", "RandomForestClassifier"): Estimator("sklearn-forest-classifier", "classification", "float32"),
    ("sklearn", "ExtraTreesClassifier"): Estimator("sklearn-extra-trees-classifier", "classification", "float32"),
    ("sklearn", "LogisticRegression"): Estimator("sklearn-logistic", "classification", None),
    ("lightgbm", "LGBMClassifier"): Estimator("lightgbm-classifier", "classification", "float64", _LGBM),
    ("xgboost", "XGBClassifier"): Estimator("xgboost-classifier", "classification", "float32", _XGB),
}

SUPPORTED = (
    "supported: ColumnTransformer of SimpleImputer, OneHotEncoder, StandardScaler, 'passthrough' and 'drop' "
    "(alone or in a Pipeline), then one of "
    + ", ".join(sorted({name for _, name in ESTIMATORS}))
    + "; see the support matrix in the preflight-bundle README"
)


def classes_of(est, where: str = "the classifier") -> list[int | str]:
    """A fitted classifier's classes as the manifest lists them: integers or
    strings, in the order of its `predict_proba` columns."""
    raw = list(getattr(est, "classes_", []))
    if len(raw) < 2:
        raise UnsupportedStep(where, f"a classifier needs at least two classes, not {len(raw)}")
    if all(isinstance(c, (bool, np.bool_)) for c in raw):
        raise UnsupportedStep(where, "boolean classes: encode the target as 0 and 1, or as strings, before fitting")
    if all(isinstance(c, (int, np.integer)) for c in raw):
        return [int(c) for c in raw]
    if all(isinstance(c, (str, np.str_)) for c in raw):
        return [str(c) for c in raw]
    kinds = sorted({type(c).__name__ for c in raw})
    raise UnsupportedStep(
        where, f"classes of type {', '.join(kinds)}: a bundle's classes are integers or strings; encode the target as one of them"
    )


def estimator_of(est) -> Estimator | None:
    root = type(est).__module__.split(".")[0]
    return ESTIMATORS.get((root, type(est).__name__))


def _refuse(where: str, obj, reason: str) -> UnsupportedStep:
    return UnsupportedStep(f"{where} ({type(obj).__name__})", f"cannot be exported to ONNX faithfully: {reason}; {SUPPORTED}")


def _check_transformer(where: str, t, columns) -> list[str]:
    """Checks one ColumnTransformer entry; returns the names of the columns it imputes."""
    if isinstance(t, str):
        if t in ("passthrough", "drop"):
            return []
        raise UnsupportedStep(where, f"'{t}' is not a transformer; {SUPPORTED}")
    if isinstance(t, Pipeline):
        imputed = []
        for name, step in t.steps:
            imputed += _check_transformer(f"{where} › step '{name}'", step, columns)
        return imputed
    if isinstance(t, SimpleImputer):
        if t.add_indicator:
            raise _refuse(where, t, "add_indicator=True adds missing-value indicator columns this exporter does not convert")
        if not (isinstance(t.missing_values, float) and np.isnan(t.missing_values)):
            raise _refuse(where, t, f"missing_values={t.missing_values!r}: only NaN (JSON null) is imputed in a bundle")
        return list(columns)
    if isinstance(t, OneHotEncoder):
        if t.min_frequency is not None or t.max_categories is not None or t.handle_unknown == "infrequent_if_exist":
            raise _refuse(where, t, "infrequent-category grouping (min_frequency, max_categories) is not converted faithfully")
        if t.drop is not None:
            raise _refuse(where, t, f"drop={t.drop!r} is not supported by this exporter; use drop=None")
        return []
    if isinstance(t, StandardScaler):
        return []
    reason = (
        "it runs arbitrary Python code, which no converter can translate"
        if type(t).__name__ == "FunctionTransformer"
        else "this exporter has no converter it has verified for it"
    )
    raise _refuse(where, t, reason)


def check_pipeline(model) -> tuple[Estimator, list[str], set[str]]:
    """Checks that `model` is a pipeline the exporter converts faithfully.

    Returns what the exporter knows of the final estimator, the columns the ColumnTransformer
    reads (in its order), and the columns it imputes. Raises UnsupportedStep
    naming the first step that is not supported.
    """
    if not isinstance(model, Pipeline):
        kind = type(model).__name__
        raise UnsupportedStep(
            f"the model ({kind})",
            "write_bundle takes a fitted scikit-learn Pipeline whose first step is a ColumnTransformer that "
            "names its columns, so that each manifest input becomes one ONNX input; wrap the estimator: "
            "Pipeline([('pre', ColumnTransformer([...])), ('model', estimator)])",
        )
    steps = model.steps
    if len(steps) != 2:
        names = [n for n, _ in steps]
        raise UnsupportedStep(
            f"the pipeline (steps {names})",
            "write_bundle takes exactly two steps, a ColumnTransformer and a regressor; chain further "
            "transformers inside the ColumnTransformer's entries",
        )
    (pre_name, pre), (est_name, est) = steps
    if not isinstance(pre, ColumnTransformer):
        raise _refuse(f"pipeline step '{pre_name}'", pre, "the first step must be a ColumnTransformer")
    if not (isinstance(pre.remainder, str) and pre.remainder == "drop"):
        raise _refuse(
            f"pipeline step '{pre_name}'", pre,
            f"remainder={pre.remainder!r}: name every column the model reads in an entry (remainder='drop')",
        )
    columns: list[str] = []
    imputed: set[str] = set()
    transformers = getattr(pre, "transformers_", None)
    if transformers is None:
        raise ValueError(f"pipeline step '{pre_name}' (ColumnTransformer) is not fitted; fit the pipeline before writing a bundle")
    for name, t, cols in pre.transformers:
        where = f"pipeline step '{pre_name}' › transformer '{name}'"
        if not (isinstance(cols, list) and all(isinstance(c, str) for c in cols)):
            raise UnsupportedStep(
                where, f"columns {cols!r}: give each entry a list of column names, which become the ONNX input names"
            )
        imputed |= set(_check_transformer(where, t, cols))
        if t == "drop":
            continue
        for c in cols:
            if c not in columns:
                columns.append(c)
    kind = estimator_of(est)
    if kind is None:
        raise _refuse(f"pipeline step '{est_name}'", est, "this exporter has no converter it has verified for it")
    if kind.task == "classification":
        classes_of(est, f"pipeline step '{est_name}'")
    if kind.family == "sklearn-hist-gbdt":
        if getattr(est, "is_categorical_", None) is not None and np.any(est.is_categorical_):
            raise _refuse(
                f"pipeline step '{est_name}'", est,
                "native categorical splits (categorical_features) are not converted; one-hot encode the column instead",
            )
        if hist.link_of(est) not in hist.LINKS:
            raise _refuse(f"pipeline step '{est_name}'", est, f"loss={est.loss!r}: its link function is not converted")
    return kind, columns, imputed


_registered: set[str] = set()


def _register(kind: Estimator) -> None:
    """Teaches skl2onnx the converters it does not hold: LightGBM's and
    XGBoost's from onnxmltools, HistGradientBoosting's from `hist.py`, and
    SimpleImputer's in double from `double.py`."""
    if "imputer" not in _registered:
        double.register_imputer()
        _registered.add("imputer")
    if kind.family in _registered:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes

    if kind.family == "lightgbm":
        from lightgbm import LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(
            LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes, convert_lightgbm,
            options={"split": None},
        )
    elif kind.family == "lightgbm-classifier":
        from lightgbm import LGBMClassifier
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
        from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

        update_registered_converter(
            LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes, convert_lightgbm,
            options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
        )
    elif kind.family == "xgboost":
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBRegressor

        update_registered_converter(
            XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost,
        )
    elif kind.family == "xgboost-classifier":
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
        from xgboost import XGBClassifier

        update_registered_converter(
            XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes, convert_xgboost,
            options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
        )
    elif kind.family == "sklearn-hist-gbdt":
        hist.register()
    _registered.add(kind.family)


def export_onnx(
    pipe: Pipeline,
    inputs: list[Input],
    output: str | list[Input],
    batch: int | None = None,
    compact: bool = False,
    precision: str = "float32",
) -> onnx.ModelProto:
    """The pipeline as ONNX, one `[N, 1]` input per manifest input and one
    `[N, 1]` FP32 output; for a classifier, `output` is its two outputs, the
    label (`[N]`, INT64 or BYTES) and the probabilities (`[N, K]` FP32, with
    ZipMap off). `precision` "float64" expects the FP32 inputs
    declared FP64 (`with_precision`) and splits as training does (see the
    module's documentation). `batch` fixes the first dimension (only a
    defect fixture wants that); `compact` writes a float32 export's tree
    ensembles in ONNX-ML opset 5 form (`compact.py`). The file is
    byte-identical run to run."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, Int64TensorType, StringTensorType

    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: give one of {list(PRECISIONS)}")
    kind, _, _ = check_pipeline(pipe)
    _register(kind)
    types = {"FP32": FloatTensorType, "FP64": DoubleTensorType, "INT64": Int64TensorType, "BYTES": StringTensorType}
    for i in inputs:
        if i.datatype not in types:
            raise ValueError(f"input '{i.name}': the exporter writes FP32, FP64, INT64 and BYTES inputs, not {i.datatype}")
    integers = [i.name for i in inputs if i.datatype == "INT64"]
    if precision == "float64":
        # Exported as doubles, so that every operator computes in double; cast from INT64 below.
        types["INT64"] = DoubleTensorType
    options = None
    if isinstance(output, str):
        final = [(output, FloatTensorType([None, 1]))]
    else:
        label, probabilities = output
        label_type = Int64TensorType if label.datatype == "INT64" else StringTensorType
        final = [(label.name, label_type([None])), (probabilities.name, FloatTensorType([None, probabilities.shape[1]]))]
        options = {id(pipe.steps[-1][1]): {"zipmap": False}}
    try:
        model = to_onnx(
            pipe,
            initial_types=[(i.name, types[i.datatype]([batch, 1])) for i in inputs],
            final_types=final,
            target_opset=TARGET_OPSET,
            options=options,
        )
    except Exception as e:
        raise _converter_failure(pipe, e) from e
    model.doc_string = ""
    model = _named_as_declared(model, [i.name for i in inputs])
    if precision == "float64":
        model = double.integer_inputs(model, integers)
    if precision == "float64" and kind.splits == "float32":
        model = double.round_split_inputs(model)
    if precision == "float64" and kind.family == "lightgbm":
        est_name, est = pipe.steps[-1]
        try:
            model = double.exact_thresholds(model, double.lightgbm_thresholds(est))
        except double.NotExact as e:
            raise UnsupportedStep(f"pipeline step '{est_name}' ({type(est).__name__})", str(e)) from None
    if compact and precision == "float32":
        # The opset-5 rewrite takes float thresholds; a float64 export keeps
        # the converters' form, whose doubles it needs.
        model = compact_trees(model)
    # The converters collect opsets in a set, whose order follows Python's
    # salted string hash; sorting makes the file byte-identical run to run.
    opsets = sorted(model.opset_import, key=lambda o: o.domain)
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    return model


def _named_as_declared(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """The graph's inputs under the manifest's names: skl2onnx renames a
    column such as 'mean radius' or 'od280/od315' to a plain identifier, and
    a client sends the DataFrame's own column names."""
    renamed = {g.name: n for g, n in zip(model.graph.input, names) if g.name != n}
    if not renamed:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for g in out.graph.input:
        g.name = renamed.get(g.name, g.name)
    for node in out.graph.node:
        for k, used in enumerate(node.input):
            if used in renamed:
                node.input[k] = renamed[used]
    return out


def with_precision(inputs: list[Input], precision: str) -> list[Input]:
    """The inputs as an export of `precision` takes them: float64 reads
    every float input as FP64, so that no value is rounded on the wire."""
    if precision == "float32":
        return list(inputs)
    from dataclasses import replace

    return [replace(i, datatype="FP64") if i.datatype == "FP32" else i for i in inputs]


def _places(pipe: Pipeline) -> dict[int, str]:
    """Where each step object sits in the pipeline, by identity."""
    places: dict[int, str] = {}
    (pre_name, pre), (est_name, est) = pipe.steps
    places[id(pre)] = f"pipeline step '{pre_name}' (ColumnTransformer)"
    places[id(est)] = f"pipeline step '{est_name}' ({type(est).__name__})"
    for name, t, _ in getattr(pre, "transformers_", []):
        where = f"pipeline step '{pre_name}' › transformer '{name}'"
        places[id(t)] = f"{where} ({type(t).__name__})"
        if isinstance(t, Pipeline):
            for sub, step in t.steps:
                places[id(step)] = f"{where} › step '{sub}' ({type(step).__name__})"
    return places


def _converter_failure(pipe: Pipeline, error: Exception) -> UnsupportedStep:
    """The converter's failure, with the step whose converter failed named."""
    places = _places(pipe)
    step = None
    tb = error.__traceback__
    while tb is not None:
        op = tb.tb_frame.f_locals.get("operator")
        raw = getattr(op, "raw_operator", None)
        if raw is not None and id(raw) in places:
            step = places[id(raw)]
        tb = tb.tb_next
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    cause = error.__cause__ or error.__context__
    if cause is not None and str(cause).strip():
        detail = f"{detail} {type(cause).__name__}: {str(cause).strip().splitlines()[0]}"
    if len(detail) > 300:
        detail = detail[:297] + "..."
    step = step or f"pipeline step '{pipe.steps[-1][0]}' ({type(pipe.steps[-1][1]).__name__})"
    return UnsupportedStep(
        step,
        f"the ONNX converter failed on it ({type(error).__name__}: {detail}); with the installed converter "
        f"versions this step cannot be exported; {SUPPORTED}",
    )


def session(model: onnx.ModelProto | bytes | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_onnx(model, frame: pd.DataFrame, inputs: list[Input], output: str) -> np.ndarray:
    """The exported model's output for each row of `frame`, as ONNX Runtime computes it."""
    s = model if isinstance(model, ort.InferenceSession) else session(model)
    (out,) = s.run([output], onnx_feed(frame, inputs))
    return np.asarray(out).reshape(-1).astype(np.float64)


def run_classifier(model, frame: pd.DataFrame, inputs: list[Input], outputs: list[Input]) -> tuple[np.ndarray, np.ndarray]:
    """A classifier export's labels and probabilities (`[N, K]`) for each row
    of `frame`, as ONNX Runtime computes them."""
    s = model if isinstance(model, ort.InferenceSession) else session(model)
    label, probabilities = s.run([o.name for o in outputs], onnx_feed(frame, inputs))
    return np.asarray(label).reshape(-1), np.asarray(probabilities, dtype=np.float64)
