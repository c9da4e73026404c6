"""What differs between a regressor's bundle and a classifier's.

`write_bundle` asks the task for the model's outputs, its answers as
*slots* (one column per value compared: a regressor's output; a
classifier's label, as the position of its class, and each class's
probability, as the Rust harness reads them), the rows of the sample and
hold-out files, the hold-out metrics, the fallback and the budgets it
suggests.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from .contract import Quality
from .export import classes_of, run_classifier, run_onnx
from .parts import (
    categorical_stats,
    fallback_json,
    fallback_pipeline,
    fallback_preprocessing,
    fallback_terms,
    numeric_stats,
    predict_fallback,
    sig_ceil,
)
from .schema import Input


class Regression:
    """One FP32 output: the prediction."""

    task = "regression"
    label_slot = None

    def __init__(self, name: str, output_range: tuple[float, float] | None, target: np.ndarray | None):
        self.output = Input(name, "FP32", *(output_range or (None, None)))
        self.outputs = [self.output]
        self.slot_names = [name]
        # The fallback's clip: the declared range, else the training target's (else none).
        self.clip = (
            tuple(output_range) if output_range is not None
            else (float(np.min(target)), float(np.max(target))) if target is not None else None
        )

    def expected(self, pipe, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(pipe.predict(frame), dtype=np.float64).reshape(-1, 1)

    def served(self, model, frame: pd.DataFrame, inputs: list[Input]) -> np.ndarray:
        return run_onnx(model, frame, inputs, self.output.name).reshape(-1, 1)

    def output_rows(self, predicted: np.ndarray) -> list[dict]:
        """Each row's outputs as samples.jsonl holds them."""
        return [{self.output.name: float(v)} for v in predicted[:, 0]]

    def target_rows(self, y: pd.Series) -> list[dict]:
        return [{self.output.name: float(t)} for t in y.to_numpy(dtype=np.float64)]

    def metrics(self, truth: pd.Series, predicted: np.ndarray) -> dict[str, float]:
        t = truth.to_numpy(dtype=np.float64)
        err = predicted[:, 0] - t
        out = {"mae": float(np.mean(np.abs(err))), "rmse": float(math.sqrt(np.mean(err**2)))}
        if np.all(t != 0):
            out["mape"] = float(np.mean(np.abs(err / t)) * 100.0)
        return out

    def fit_fallback(self, inputs: list[Input], x: pd.DataFrame, target) -> Pipeline:
        return fallback_pipeline(inputs).fit(x, target)

    def fallback_json(self, pipe: Pipeline, inputs: list[Input]) -> dict:
        return fallback_json(pipe, inputs, self.output.name, self.clip)

    def fallback_expected(self, pipe: Pipeline, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(predict_fallback(pipe, frame, self.clip), dtype=np.float64).reshape(-1, 1)

    def suggested_quality(self, measured: dict[str, float]) -> tuple[Quality, str]:
        q = Quality("mae", max=sig_ceil(1.10 * measured["mae"], 3), max_regression=0.05)
        return q, f"mae at most {q.max}, ten percent over the hold-out MAE {measured['mae']:.4g}"

    def suggested_fallback(self, measured: dict[str, float]) -> tuple[Quality, str]:
        q = Quality("mae", max=sig_ceil(1.10 * measured["mae"], 3))
        return q, f"mae at most {q.max}, ten percent over the fallback's hold-out MAE {measured['mae']:.4g}"

    def reference_outputs(self, predicted: np.ndarray) -> dict:
        return {self.output.name: numeric_stats(predicted[:, 0])}


class Classification:
    """Two outputs: the label (INT64 or BYTES) and the probabilities
    (`[-1, K]` FP32), in the order of the estimator's `classes_`."""

    task = "classification"
    label_slot = 0

    def __init__(self, est, names: tuple[str, str]):
        self.classes = classes_of(est)
        datatype = "INT64" if isinstance(self.classes[0], int) else "BYTES"
        k = len(self.classes)
        self.label = Input(names[0], datatype)
        self.probabilities = Input(names[1], "FP32", 0.0, 1.0, shape=(-1, k))
        self.outputs = [self.label, self.probabilities]
        self.slot_names = [names[0]] + [f"{names[1]}[{c}]" for c in self.classes]

    def _slots(self, labels, probabilities) -> np.ndarray:
        index = {c: k for k, c in enumerate(self.classes)}
        positions = np.array([index.get(self._class(v), np.nan) for v in labels], dtype=np.float64)
        return np.column_stack([positions, np.asarray(probabilities, dtype=np.float64)])

    def _class(self, value):
        return int(value) if isinstance(self.classes[0], int) else str(value)

    def expected(self, pipe, frame: pd.DataFrame) -> np.ndarray:
        return self._slots(pipe.predict(frame), pipe.predict_proba(frame))

    def served(self, model, frame: pd.DataFrame, inputs: list[Input]) -> np.ndarray:
        labels, probabilities = run_classifier(model, frame, inputs, self.outputs)
        return self._slots(labels, probabilities)

    def output_rows(self, predicted: np.ndarray) -> list[dict]:
        return [
            {self.label.name: self.classes[int(row[0])], self.probabilities.name: [float(p) for p in row[1:]]}
            for row in predicted
        ]

    def target_rows(self, y: pd.Series) -> list[dict]:
        return [{self.label.name: self._class(t)} for t in y]

    def metrics(self, truth: pd.Series, predicted: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

        t = np.array([self._class(v) for v in truth])
        labels = np.array([self.classes[int(k)] for k in predicted[:, 0]])
        p = predicted[:, 1:]
        out = {
            "accuracy": float(np.mean(labels == t)),
            "log_loss": float(log_loss(t, p, labels=self.classes)),
            "brier": float(brier_score_loss(t, p, labels=self.classes)),
        }
        if len(set(t)) > 1:
            if len(self.classes) == 2:
                out["roc_auc"] = float(roc_auc_score(t == self.classes[1], p[:, 1]))
            else:
                out["roc_auc"] = float(roc_auc_score(t, p, multi_class="ovr", average="macro", labels=self.classes))
        return out

    def fit_fallback(self, inputs: list[Input], x: pd.DataFrame, target) -> Pipeline:
        model = LogisticRegression(C=1.0, max_iter=2000)
        return Pipeline([("pre", fallback_preprocessing(inputs)), ("model", model)]).fit(x, target)

    def fallback_json(self, pipe: Pipeline, inputs: list[Input]) -> dict:
        model = pipe.named_steps["model"]
        fitted = [self._class(c) for c in model.classes_]
        if fitted != self.classes:
            raise ValueError(
                f"the fallback learnt the classes {fitted}, the model {self.classes}: fit both on the same labels"
            )
        binary = len(self.classes) == 2
        numeric, categorical = fallback_terms(pipe, inputs, per_class=not binary)
        intercept = [float(b) for b in np.ravel(model.intercept_)]
        return {
            "kind": "logistic" if binary else "softmax",
            "output": self.probabilities.name,
            "intercept": intercept[0] if binary else intercept,
            "numeric": numeric,
            "categorical": categorical,
        }

    def fallback_expected(self, pipe: Pipeline, frame: pd.DataFrame) -> np.ndarray:
        return self._slots(pipe.predict(frame), pipe.predict_proba(frame))

    def suggested_quality(self, measured: dict[str, float]) -> tuple[tuple[Quality, ...], str]:
        floor = math.floor(0.95 * measured["accuracy"] * 1000) / 1000
        accuracy = Quality("accuracy", min=floor, max_regression=0.05)
        log_loss = Quality("log_loss", max=sig_ceil(1.10 * measured["log_loss"], 3), max_regression=0.05)
        return (accuracy, log_loss), (
            f"accuracy at least {accuracy.min}, 95% of the hold-out's {measured['accuracy']:.4g}, and log_loss at "
            f"most {log_loss.max}, ten percent over its {measured['log_loss']:.4g}"
        )

    def suggested_fallback(self, measured: dict[str, float]) -> tuple[Quality, str]:
        q = Quality("log_loss", max=sig_ceil(1.10 * measured["log_loss"], 3))
        return q, f"log_loss at most {q.max}, ten percent over the fallback's hold-out log loss {measured['log_loss']:.4g}"

    def reference_outputs(self, predicted: np.ndarray) -> dict:
        """The shares of the predicted classes: what the monitor's drift of
        the served classes is measured against."""
        labels = np.array([str(self.classes[int(k)]) for k in predicted[:, 0]])
        return {self.label.name: categorical_stats(labels, tuple(str(c) for c in self.classes))}


def task_of(kind, est, output, output_range, target):
    """The task of an estimator `kind` (`export.Estimator`)."""
    if kind.task == "classification":
        if output is not None and (not isinstance(output, tuple) or len(output) != 2):
            raise ValueError("output: a classifier's outputs are named by a pair, (label, probabilities)")
        if output_range is not None:
            raise ValueError("output_range: a classifier's probabilities lie in [0, 1]; give no range")
        return Classification(est, output or ("label", "probabilities"))
    return Regression(output, output_range, target)
