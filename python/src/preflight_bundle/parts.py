"""The files of a bundle, each from the training process's own objects:
manifest.toml, fallback.json, samples.jsonl / holdout.jsonl and
reference.json. `write_bundle` uses them; so can a script that needs to
write a bundle piece by piece (the fixture pipeline does)."""

from __future__ import annotations

import json
import math
import sys
from importlib.metadata import PackageNotFoundError, version as package_version
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from .check import BundleError, OTHER_CATEGORY, read_row
from .contract import Contract, contract_lines, toml_value
from .schema import Input

# ----------------------------------------------------------------- manifest


def installed_versions(packages: Iterable[str]) -> dict[str, str]:
    """The installed version of each package, in the order given."""
    found = {}
    for p in packages:
        try:
            found[p] = package_version(p)
        except PackageNotFoundError:
            # xgboost is also published as xgboost-cpu.
            alternatives = {"xgboost": "xgboost-cpu"}
            if p in alternatives:
                found[p] = package_version(alternatives[p])
            else:
                raise
    return found


def feature_lines(table: str, features: list[Input]) -> list[str]:
    lines = []
    for i in features:
        lines += ["", f"[[{table}]]", f"name = {json.dumps(i.name)}", f'datatype = "{i.datatype}"']
        if i.nullable:
            lines.append("nullable = true")
        if i.min is not None:
            lines.append(f"min = {toml_value(i.min)}")
        if i.max is not None:
            lines.append(f"max = {toml_value(i.max)}")
        if i.categories:
            lines.append("categories = [" + ", ".join(json.dumps(c) for c in i.categories) + "]")
        if i.shape is not None:
            lines.append("shape = [" + ", ".join(str(d) for d in i.shape) + "]")
    return lines


def manifest_toml(
    *,
    name: str,
    version: int,
    inputs: list[Input],
    outputs: list[Input],
    contract: Contract,
    packages: dict[str, str],
    task: str = "regression",
    description: str | None = None,
    python: str | None = None,
    model_file: str = "model.onnx",
    fallback_file: str | None = "fallback.json",
    deadline_ms: int | None = 25,
    contract_comment: str | None = None,
    contract_table: str = "contract",
    runtime_comment: str | None = None,
    classes: list | None = None,
) -> str:
    """manifest.toml's text. `contract_table` other than "contract" writes a
    misspelt table, as a defect fixture needs."""
    lines = ["[model]", f"name = {json.dumps(name)}", f"version = {version}", f"task = {json.dumps(task)}"]
    if description is not None:
        lines.append(f"description = {json.dumps(description)}")
    if classes is not None:
        lines.append("classes = [" + ", ".join(json.dumps(c) for c in classes) + "]")
    lines += [
        "",
        "[producer]",
        f'python = "{python or sys.version.split()[0]}"',
        "[producer.packages]",
        *(f"{p} = {json.dumps(v)}" for p, v in packages.items()),
        "",
        "[runtime]",
        *([f"# {runtime_comment}"] if runtime_comment else []),
        f"model = {json.dumps(model_file)}",
    ]
    if fallback_file is not None:
        lines.append(f"fallback = {json.dumps(fallback_file)}")
    if deadline_ms is not None:
        lines.append(f"deadline_ms = {deadline_ms}")
    lines += feature_lines("inputs", inputs)
    lines += feature_lines("outputs", outputs)
    lines += contract_lines(contract, contract_table, contract_comment)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- fallback


def fallback_preprocessing(inputs: list[Input]) -> ColumnTransformer:
    """The fallback's own preprocessing, in the shape fallback.json
    describes: mean-imputed, standardised numeric inputs and one-hot
    categories (unseen ones weigh nothing)."""
    numeric = [i.name for i in inputs if i.datatype != "BYTES"]
    parts = []
    if numeric:
        parts.append(("num", Pipeline([("impute", SimpleImputer(strategy="mean")), ("scale", StandardScaler())]), numeric))
    for i in inputs:
        if i.datatype == "BYTES":
            categories = [list(i.categories)] if i.categories else "auto"
            parts.append((i.name, OneHotEncoder(categories=categories, handle_unknown="ignore"), [i.name]))
    return ColumnTransformer(parts)


def fallback_pipeline(inputs: list[Input], alpha: float = 1.0) -> Pipeline:
    """The linear fallback as a scikit-learn pipeline: the fallback's
    preprocessing, then a ridge regression."""
    return Pipeline([("pre", fallback_preprocessing(inputs)), ("model", Ridge(alpha=alpha))])


def fallback_terms(pipe: Pipeline, inputs: list[Input], per_class: bool = False) -> tuple[dict, dict]:
    """fallback.json's `numeric` and `categorical` terms from a fitted
    fallback pipeline; with `per_class`, each coefficient is a list, one
    number per class (a softmax fallback)."""
    pre = pipe.named_steps["pre"]
    coef = np.atleast_2d(pipe.named_steps["model"].coef_)

    def number(column: int):
        values = [float(c) for c in coef[:, column]]
        return values if per_class else values[0]

    numeric_names = [i.name for i in inputs if i.datatype != "BYTES"]
    numeric = {}
    if numeric_names:
        num = pre.named_transformers_["num"]
        impute = num.named_steps["impute"].statistics_
        scaler = num.named_steps["scale"]
        numeric = {
            name: {
                "impute": float(impute[k]),
                "mean": float(scaler.mean_[k]),
                "scale": float(scaler.scale_[k]),
                "coef": number(k),
            }
            for k, name in enumerate(numeric_names)
        }
    categorical = {}
    offset = len(numeric_names)
    for i in inputs:
        if i.datatype != "BYTES":
            continue
        cats = [str(c) for c in pre.named_transformers_[i.name].categories_[0]]
        weights = {c: number(offset + j) for j, c in enumerate(cats)}
        offset += len(cats)
        # handle_unknown="ignore" encodes an unseen category as all zeros.
        weights[OTHER_CATEGORY] = [0.0] * coef.shape[0] if per_class else 0.0
        categorical[i.name] = weights
    return numeric, categorical


def fallback_json(pipe: Pipeline, inputs: list[Input], output: str, clip: tuple[float, float] | None) -> dict:
    """fallback.json's content with the fitted fallback pipeline's own numbers."""
    model = pipe.named_steps["model"]
    numeric, categorical = fallback_terms(pipe, inputs)
    doc = {
        "kind": "linear",
        "output": output,
        "intercept": float(np.ravel(model.intercept_)[0]) if np.ndim(model.intercept_) else float(model.intercept_),
        "numeric": numeric,
        "categorical": categorical,
    }
    if clip is not None:
        doc["clip"] = [clip[0], clip[1]]
    return doc


def predict_fallback(pipe: Pipeline, frame: pd.DataFrame, clip: tuple[float, float] | None) -> np.ndarray:
    predicted = pipe.predict(frame)
    return np.clip(predicted, clip[0], clip[1]) if clip is not None else predicted


# ---------------------------------------------------------------- reference


def numeric_stats(values: np.ndarray) -> dict:
    present = values[~np.isnan(values)]
    edges = np.round(np.quantile(present, np.linspace(0.0, 1.0, 11)), 4)
    # Rounded outer edges must still hold every value, also where rounding
    # to four decimals cannot move a large value outward.
    edges[0] = min(math.floor(present.min() * 1e4) / 1e4, float(present.min()))
    edges[-1] = max(math.ceil(present.max() * 1e4) / 1e4, float(present.max()))
    edges = np.unique(edges)
    stats = {
        "kind": "numeric",
        "count": int(values.size),
        "null_fraction": round(float(1.0 - present.size / values.size), 6),
        "mean": round(float(present.mean()), 6),
        "std": round(float(present.std()), 6),
        "min": round(float(present.min()), 6),
        "max": round(float(present.max()), 6),
    }
    if edges.size >= 2:
        counts, _ = np.histogram(present, bins=edges)
        stats["bins"] = {
            "edges": [float(e) for e in edges],
            "frequencies": [round(float(c) / present.size, 6) for c in counts],
        }
    return stats


def categorical_stats(values: np.ndarray, categories: tuple[str, ...]) -> dict:
    shares = {c: round(float(np.mean(values == c)), 6) for c in categories}
    other = float(np.mean(~np.isin(values, list(categories))))
    if other > 0:
        shares[OTHER_CATEGORY] = round(other, 6)
    return {"kind": "categorical", "count": int(values.size), "null_fraction": 0.0, "categories": shares}


def reference_json(
    train: pd.DataFrame, inputs: list[Input], predictions: dict[str, np.ndarray] | None = None, outputs: dict | None = None
) -> dict:
    """reference.json: statistics of each input over the training rows, and
    of each output over the training process's predictions (`predictions`,
    numeric; or `outputs`, the statistics already made, such as a
    classifier's class shares)."""
    stats = {}
    for i in inputs:
        column = train[i.name]
        if i.datatype == "BYTES":
            cats = i.categories or tuple(sorted({str(v) for v in column}))
            stats[i.name] = categorical_stats(column.to_numpy().astype(str), cats)
        else:
            stats[i.name] = numeric_stats(column.to_numpy(dtype=np.float64, na_value=np.nan))
    return {
        "format": 1,
        "rows": int(len(train)),
        "inputs": stats,
        "outputs": outputs
        if outputs is not None
        else {name: numeric_stats(np.asarray(p, dtype=np.float64)) for name, p in (predictions or {}).items()},
    }


# --------------------------------------------------------------------- rows


def write_jsonl(path: Path, rows: list[dict], inputs: list[Input], outputs: list[Input]) -> None:
    """Writes JSON Lines rows after checking each against the manifest's
    declarations, as Preflight will: a row that would be refused is refused
    here, naming the file, line and input."""
    in_features = [i.feature() for i in inputs]
    out_features = [o.feature() for o in outputs]
    # A classifier's target is its label alone.
    classified = any(o.shape is not None for o in outputs)
    target_features = [f for f in out_features if f.shape is None] if classified else out_features
    for n, row in enumerate(rows, start=1):
        for key, features, domain in (
            ("inputs", in_features, True),
            ("outputs", out_features, True),
            ("fallback_outputs", out_features, True),
            ("target", target_features, False),
        ):
            if row.get(key) is None:
                continue
            try:
                read_row(row[key], features, domain)
            except Exception as e:  # _RowError carries the name and the reason
                name, message = getattr(e, "name", key), getattr(e, "message", str(e))
                raise BundleError(
                    "conformance", path, f"row '{row.get('id')}': {message}", line=n, key=f"{key}.{name}"
                ) from None
    path.write_text("".join(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in rows))


def write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")


def sig_ceil(x: float, digits: int = 1) -> float:
    """Rounds up to `digits` significant digits, so a budget is never tighter than measured."""
    if x <= 0:
        return 0.0
    exponent = math.floor(math.log10(x)) - digits + 1
    return round(math.ceil(x / 10**exponent) * 10**exponent, max(0, -exponent))
