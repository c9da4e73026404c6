"""The inputs and outputs of a bundle: declared, inferred from a DataFrame and
the pipeline, and turned into rows and ONNX feeds."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .check import Feature

# The datatypes the exporter writes: what skl2onnx's input types map to.
EXPORTED_DATATYPES = ("FP32", "FP64", "INT64", "BYTES")


@dataclass(frozen=True)
class Input:
    """One feature (or output) of the model as the manifest declares it.

    `datatype` is an Open Inference Protocol datatype; the exporter writes
    FP32, INT64 and BYTES. `min`/`max` bound numeric values, `categories`
    lists a BYTES input's values, and `nullable` lets a float input be null
    (it reaches the model as NaN).
    """

    name: str
    datatype: str
    min: float | int | None = None
    max: float | int | None = None
    nullable: bool = False
    categories: tuple[str, ...] | None = None
    #: `(-1, K)`: a classifier's probabilities, K per row (outputs only).
    shape: tuple[int, ...] | None = None

    def feature(self) -> Feature:
        """The input as the bundle checker reads it back from the manifest."""
        return Feature(
            name=self.name,
            datatype=self.datatype,
            nullable=self.nullable,
            min=None if self.min is None else float(self.min),
            max=None if self.max is None else float(self.max),
            categories=None if self.categories is None else list(self.categories),
            shape=None if self.shape is None else list(self.shape),
        )


# Overrides may change any field but the name.
OVERRIDABLE = ("datatype", "min", "max", "nullable", "categories")


def is_text(series: pd.Series) -> bool:
    return (
        pd.api.types.is_object_dtype(series)
        or pd.api.types.is_string_dtype(series)
        or isinstance(series.dtype, pd.CategoricalDtype)
    )


def infer_input(
    name: str,
    frames: Iterable[pd.DataFrame],
    categories: Iterable[str] | None = None,
    imputed: bool = False,
) -> Input:
    """Infers one input from the columns called `name` of `frames`.

    Floats become FP32 (nullable when a value is missing, or when the
    pipeline imputes the column), integers and booleans INT64, text BYTES
    with the categories the pipeline's encoder knows (else those seen).
    Numeric bounds are the smallest and largest values seen.
    """
    columns = [f[name] for f in frames if f is not None and name in f.columns]
    if not columns:
        raise ValueError(f"input '{name}': no column of that name in the training data")
    first = columns[0]
    if is_text(first):
        values = pd.concat([c.astype(object) for c in columns], ignore_index=True)
        if values.isna().any():
            raise ValueError(
                f"input '{name}' has missing values, but a BYTES input cannot be null in a bundle "
                "(a null reaches the model as NaN); fill them with a category such as 'missing' before training"
            )
        seen = sorted({str(v) for v in values})
        if categories is None:
            categories = seen
        else:
            # Values the encoder never saw (hold-out rows, say) are still valid inputs.
            categories = list(categories) + [v for v in seen if v not in set(categories)]
        return Input(name, "BYTES", categories=tuple(str(c) for c in categories))
    if pd.api.types.is_bool_dtype(first) or pd.api.types.is_integer_dtype(first):
        values = np.concatenate([c.to_numpy().astype(np.int64) for c in columns])
        return Input(name, "INT64", int(values.min()), int(values.max()))
    if pd.api.types.is_float_dtype(first):
        values = np.concatenate([c.to_numpy(dtype=np.float64, na_value=np.nan) for c in columns])
        present = values[~np.isnan(values)]
        if present.size == 0:
            raise ValueError(f"input '{name}' has no values in the training data, only nulls")
        if not np.all(np.isfinite(present)):
            raise ValueError(f"input '{name}' holds infinite values, which JSON and the bundle format cannot carry")
        nullable = bool(present.size < values.size) or imputed
        return Input(name, "FP32", float(present.min()), float(present.max()), nullable=nullable)
    raise ValueError(
        f"input '{name}' has dtype {first.dtype}, which the bundle exporter does not map to a datatype "
        "(it maps floats to FP32, integers and booleans to INT64, and text to BYTES)"
    )


def apply_override(base: Input, override: Input | Mapping[str, Any]) -> Input:
    if isinstance(override, Input):
        if override.name != base.name:
            raise ValueError(f"the override for input '{base.name}' is named '{override.name}'")
        return override
    unknown = set(override) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(
            f"input '{base.name}': unknown override key(s) {sorted(unknown)}; the keys are {list(OVERRIDABLE)}"
        )
    values = dict(override)
    if "categories" in values and values["categories"] is not None:
        values["categories"] = tuple(values["categories"])
    return replace(base, **values)


def row_inputs(row: Mapping[str, Any], inputs: list[Input]) -> dict:
    """One row's input values as JSON: text, integers, floats, null for NaN."""
    values = {}
    for i in inputs:
        v = row[i.name]
        if i.datatype == "BYTES":
            values[i.name] = str(v)
        elif i.datatype in ("INT64", "INT32", "INT16", "INT8", "UINT8", "UINT16", "UINT32", "UINT64"):
            values[i.name] = int(v)
        elif i.datatype == "BOOL":
            values[i.name] = bool(v)
        elif v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            values[i.name] = None
        else:
            values[i.name] = float(v)
    return values


def onnx_feed(frame: pd.DataFrame, inputs: list[Input]) -> dict[str, np.ndarray]:
    """The frame's columns as the exported graph's `[N, 1]` inputs."""
    feed = {}
    for i in inputs:
        if i.datatype == "FP32":
            column = frame[i.name].to_numpy(dtype=np.float32, na_value=np.nan)
        elif i.datatype == "FP64":
            column = frame[i.name].to_numpy(dtype=np.float64, na_value=np.nan)
        elif i.datatype == "INT64":
            column = frame[i.name].to_numpy().astype(np.int64)
        elif i.datatype == "BYTES":
            column = frame[i.name].to_numpy().astype(str).astype(object)
        else:
            raise ValueError(f"input '{i.name}': the exporter feeds FP32, FP64, INT64 and BYTES, not {i.datatype}")
        feed[i.name] = column.reshape(-1, 1)
    return feed
