"""The export against the training process: parity, and the precision that
gives it.

An export is compared with the pipeline's own predictions on the samples
and the hold-out, as *slots* (`tasks.py`): a regressor's output; a
classifier's probabilities within the tolerance, and its label exactly,
except where training's two largest probabilities lie within the tolerance
of each other (float rounding may then name either class). Beyond that the
bundle is refused, naming the worst rows and the inputs that explain them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .contract import Parity
from .export import PRECISIONS, UnsupportedStep, export_onnx, session, with_precision
from .probes import Probes, probe_rows
from .schema import Input, onnx_feed


class ParityError(ValueError):
    """The exported model disagrees with the training process beyond the tolerance."""

    def __init__(self, message: str, worst: pd.DataFrame, inputs: list[str]):
        self.worst = worst
        self.inputs = inputs
        super().__init__(message)


def disagreeing(task, expected: np.ndarray, served: np.ndarray, parity: Parity) -> tuple[np.ndarray, np.ndarray]:
    """Which rows disagree, and each row's largest difference over the
    values compared with the tolerance (a label counts 1 when it differs)."""
    values = [k for k in range(expected.shape[1]) if k != task.label_slot]
    err = np.abs(served[:, values] - expected[:, values])
    allowance = parity.abs + parity.rel * np.abs(expected[:, values])
    bad = ~(err <= allowance).all(axis=1)  # NaN never agrees
    worst = np.where(np.isnan(err), np.inf, err).max(axis=1)
    if task.label_slot is not None:
        probabilities = np.sort(expected[:, values], axis=1)
        top, second = probabilities[:, -1], probabilities[:, -2]
        near_tie = top - second <= parity.abs + parity.rel * np.abs(top)
        label_off = served[:, task.label_slot] != expected[:, task.label_slot]
        bad |= label_off & ~near_tie
        worst = np.maximum(worst, np.where(label_off & ~near_tie, 1.0, 0.0))
    return bad, worst


def _culprits(task, pipe, model_session, row: pd.DataFrame, inputs: list[Input], reference: pd.DataFrame, parity: Parity) -> list[str]:
    """The inputs of one disagreeing row whose value, replaced by a typical
    one, makes the export agree with the training process again."""
    found = []
    for i in inputs:
        probe = row.copy()
        column = reference[i.name]
        if i.datatype == "BYTES":
            typical = column.astype(str).mode().iloc[0]
        else:
            typical = column.median()
            if i.datatype == "INT64":
                typical = int(round(typical))
        if probe[i.name].iloc[0] == typical:
            continue
        probe[i.name] = pd.Series([typical], index=probe.index).astype(row[i.name].dtype, errors="ignore")
        bad, _ = disagreeing(task, task.expected(pipe, probe), task.served(model_session, probe, inputs), parity)
        if not bad[0]:
            found.append(i.name)
    return found


def check_parity(task, pipe, model, frames: list[tuple[str, pd.DataFrame]], inputs: list[Input], parity: Parity, reference: pd.DataFrame) -> float:
    """Runs the export in ONNX Runtime on each frame and compares it with the
    pipeline's own predictions; raises ParityError naming the worst rows and
    the inputs that make them disagree. Returns the largest difference."""
    s = session(model)
    worst_err = 0.0
    for label, frame in frames:
        if frame is None or len(frame) == 0:
            continue
        expected = task.expected(pipe, frame)
        served = task.served(s, frame, inputs)
        bad, err = disagreeing(task, expected, served, parity)
        finite = err[np.isfinite(err)]
        worst_err = max(worst_err, float(finite.max()) if finite.size else 0.0)
        if not bad.any():
            continue
        order = np.argsort(-np.where(bad, err, -1.0))[: min(5, int(bad.sum()))]
        names = [i.name for i in inputs]
        worst = frame.iloc[order][names].copy()
        worst.insert(0, "row", [f"{label} row {int(k)}" for k in order])
        shown = task.label_slot if task.label_slot is not None else 0
        worst["expected"] = _shown(task, expected[order, shown])
        worst["served"] = _shown(task, served[order, shown])
        if task.label_slot is not None:
            worst["max |Δp|"] = np.abs(served[order, 1:] - expected[order, 1:]).max(axis=1)
        culprits = _culprits(task, pipe, s, frame.iloc[[order[0]]], inputs, reference, parity)
        if len(culprits) == 1:
            blame = f"; on the worst row the difference goes away when '{culprits[0]}' takes a typical value, so look at how the export treats that input"
        elif culprits:
            listed = ", ".join(f"'{c}'" for c in culprits)
            blame = f"; on the worst row the difference goes away when any one of {listed} takes a typical value, so look at how the export treats those inputs"
        else:
            blame = ""
        raise ParityError(
            f"the exported ONNX model disagrees with the training process on {int(bad.sum())} of {len(frame)} "
            f"{label} rows beyond the parity tolerance (abs {parity.abs}, rel {parity.rel}); largest difference "
            f"{float(err[bad].max()):.6g}{blame}{PROBE_HINT if label == 'probe' else ''}. Worst rows:\n"
            + worst.to_string(index=False),
            worst,
            culprits,
        )
    return worst_err


#: What a disagreement at the probe rows means, and the way to accept it.
PROBE_HINT = (
    ". Probe rows sit either side of the trees' split thresholds, where a split rounded to float32 sends "
    "a row the other way than training does; write_bundle(probes=0) writes the bundle without them, "
    "accepting that"
)


def _shown(task, values: np.ndarray):
    """A slot's values as a reader wants them: a classifier's label as its class."""
    if task.label_slot is None:
        return values
    return [task.classes[int(v)] if np.isfinite(v) else None for v in values]


@dataclass
class Exported:
    model: Any
    inputs: list[Input]
    max_err: float
    precision: str
    #: For float64: why, for the manifest; and why with what it costs, for the caller.
    reason: str | None = None
    note: str | None = None
    #: The rows at the trees' split thresholds the export was checked on too.
    probes: Probes | None = None


def export_agreeing(task, pipe, schema, parity, frames, reference, precision, compact, probes=0) -> Exported:
    """The first export, in the precisions `precision` allows, that agrees
    with training on `frames`, and on up to `probes` rows at its trees' split
    thresholds made from the first frame (`probes.py`); else the float32
    export's ParityError, with what the float64 export found."""
    tried = list(PRECISIONS) if precision == "auto" else [precision]
    outputs = task.outputs if task.label_slot is not None else task.outputs[0].name
    refusals: list[Exception] = []
    models = {}
    for p in tried:
        inputs = with_precision(schema, p)
        try:
            models[p] = export_onnx(pipe, inputs, outputs, compact=compact, precision=p)
            err = check_parity(task, pipe, models[p], frames, inputs, parity, reference)
            probed = probe_rows(models[p], frames[0][1], inputs, probes)
            err = max(err, check_parity(task, pipe, models[p], [("probe", probed.frame)], inputs, parity, reference))
        except (ParityError, UnsupportedStep) as e:
            refusals.append(e)
            continue
        exported = Exported(models[p], inputs, err, p, probes=probed)
        if refusals:
            exported.reason, exported.note = _precision_note(refusals[0], models, schema, inputs, frames)
        return exported
    first = refusals[0]
    if len(refusals) == 1 or not isinstance(first, ParityError):
        raise first
    second = str(refusals[1]).splitlines()[0]
    raise ParityError(
        f"{first}\nA float64 export (FP64 inputs, splits as the learner makes them) does not agree either: {second}",
        first.worst,
        first.inputs,
    )


def _precision_note(refusal, models, schema, inputs, frames) -> tuple[str, str]:
    """Why float64 was chosen, for the manifest; and with what it costs
    against float32 in size and in ONNX Runtime's single-row latency, for
    the caller (a measured time would make the manifest differ run to run)."""
    why = str(refusal).split(" beyond the parity")[0].replace(
        "the exported ONNX model disagrees", "the float32 export disagreed"
    )
    reason = f"precision float64: {why}; the float64 export agrees, with FP64 inputs"
    rows = next(f for _, f in frames if f is not None and len(f))
    p50_32, _ = measure_latency(models["float32"], rows, schema)
    p50_64, _ = measure_latency(models["float64"], rows, inputs)
    size_32, size_64 = (len(models[p].SerializeToString()) for p in PRECISIONS)
    cost = (
        f"{reason}. It costs {size_64 - size_32:+,} bytes ({size_32:,} -> {size_64:,}) and "
        f"{1000 * (p50_64 - p50_32):+.1f} us of single-row p50 in ONNX Runtime ({1000 * p50_32:.1f} -> {1000 * p50_64:.1f} us)"
    )
    return reason, cost


def measure_latency(onnx_model, frame: pd.DataFrame, schema: list[Input], rows: int = 200) -> tuple[float, float]:
    """ONNX Runtime's single-row latency on up to `rows` samples, in ms (p50, p99)."""
    s = session(onnx_model)
    feed = onnx_feed(frame.head(rows), schema)
    n = len(frame.head(rows))
    times = []
    for k in range(n):
        one = {name: v[k : k + 1] for name, v in feed.items()}
        start = time.perf_counter()
        s.run(None, one)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))
