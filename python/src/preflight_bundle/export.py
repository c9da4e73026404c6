"""ONNX export of scikit-learn pipelines, and the refusal of steps that no
converter here reproduces faithfully.

A supported pipeline is `ColumnTransformer` of SimpleImputer,
OneHotEncoder, StandardScaler, "passthrough" and "drop" (alone or chained
in a Pipeline), followed by one of GradientBoostingRegressor, LGBMRegressor
or XGBRegressor (and HistGradientBoostingRegressor where the installed
skl2onnx converts it). Anything else is refused before export with the
step's place in the pipeline named, and so is a step whose converter fails.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from .compact import compact_trees
from .schema import Input, onnx_feed

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


class UnsupportedStep(ValueError):
    """A pipeline step the exporter cannot convert faithfully; `step` is its place."""

    def __init__(self, step: str, message: str):
        self.step = step
        super().__init__(f"{step}: {message}")


SUPPORTED = (
    "supported: ColumnTransformer of SimpleImputer, OneHotEncoder, StandardScaler, 'passthrough' and 'drop' "
    "(alone or in a Pipeline), then GradientBoostingRegressor, LGBMRegressor "
    "or XGBRegressor; see the support matrix in the preflight-bundle README"
)


def _estimator_kind(est) -> str | None:
    name = type(est).__name__
    module = type(est).__module__
    if isinstance(est, GradientBoostingRegressor):
        return "sklearn-gbdt"
    if isinstance(est, HistGradientBoostingRegressor):
        return "sklearn-hist-gbdt"
    if name == "LGBMRegressor" and module.startswith("lightgbm"):
        return "lightgbm"
    if name == "XGBRegressor" and module.startswith("xgboost"):
        return "xgboost"
    return None


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


def check_pipeline(model) -> tuple[str, list[str], set[str]]:
    """Checks that `model` is a pipeline the exporter converts faithfully.

    Returns the final estimator's family, the columns the ColumnTransformer
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
    if is_classifier(est):
        raise _refuse(f"pipeline step '{est_name}'", est, "this version writes regression bundles only")
    if not isinstance(pre, ColumnTransformer):
        if _estimator_kind(pre) is not None:
            raise _refuse(f"pipeline step '{pre_name}'", pre, "the first step must be a ColumnTransformer")
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
    kind = _estimator_kind(est)
    if kind is None:
        raise _refuse(f"pipeline step '{est_name}'", est, "this exporter has no converter it has verified for it")
    if kind == "sklearn-hist-gbdt" and getattr(est, "is_categorical_", None) is not None and np.any(est.is_categorical_):
        raise _refuse(
            f"pipeline step '{est_name}'", est,
            "native categorical splits (categorical_features) are not converted; one-hot encode the column instead",
        )
    return kind, columns, imputed


_registered: set[str] = set()


def _register(kind: str) -> None:
    """Teaches skl2onnx the LightGBM and XGBoost converters of onnxmltools."""
    if kind in _registered or kind not in ("lightgbm", "xgboost"):
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes

    if kind == "lightgbm":
        from lightgbm import LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(
            LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes, convert_lightgbm,
            options={"split": None},
        )
    else:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBRegressor

        update_registered_converter(
            XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost,
        )
    _registered.add(kind)


def export_onnx(
    pipe: Pipeline, inputs: list[Input], output: str, batch: int | None = None, compact: bool = False
) -> onnx.ModelProto:
    """The pipeline as ONNX, one `[N, 1]` input per manifest input and one
    `[N, 1]` FP32 output. `batch` fixes the first dimension (only a defect
    fixture wants that); `compact` writes tree ensembles in ONNX-ML opset 5
    form (`compact.py`). The file is byte-identical run to run."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    kind, _, _ = check_pipeline(pipe)
    _register(kind)
    types = {"FP32": FloatTensorType, "INT64": Int64TensorType, "BYTES": StringTensorType}
    for i in inputs:
        if i.datatype not in types:
            raise ValueError(f"input '{i.name}': the exporter writes FP32, INT64 and BYTES inputs, not {i.datatype}")
    try:
        model = to_onnx(
            pipe,
            initial_types=[(i.name, types[i.datatype]([batch, 1])) for i in inputs],
            final_types=[(output, FloatTensorType([None, 1]))],
            target_opset=TARGET_OPSET,
        )
    except Exception as e:
        raise _converter_failure(pipe, e) from e
    model.doc_string = ""
    if compact:
        model = compact_trees(model)
    # The converters collect opsets in a set, whose order follows Python's
    # salted string hash; sorting makes the file byte-identical run to run.
    opsets = sorted(model.opset_import, key=lambda o: o.domain)
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    return model


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
