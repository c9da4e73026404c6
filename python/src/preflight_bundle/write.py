"""`write_bundle`: one call at the end of training writes a verified bundle."""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from .check import check_bundle, evaluate_fallback, is_valid_model_name, parse_fallback
from .contract import Contract, Latency, Parity, Quality, Size
from .export import PRECISIONS, UnsupportedStep, check_pipeline, export_onnx, run_onnx, session, with_precision
from .parts import (
    fallback_json,
    fallback_pipeline,
    installed_versions,
    manifest_toml,
    predict_fallback,
    reference_json,
    sig_ceil,
    write_json,
    write_jsonl,
)
from .schema import Input, apply_override, infer_input, row_inputs

# What parity must hold to when the caller gives no tolerance: BUNDLE.md's example.
DEFAULT_PARITY = Parity(abs=1e-3, rel=1e-4)
BASE_PACKAGES = ["scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas"]


class ParityError(ValueError):
    """The exported model disagrees with the training process beyond the tolerance."""

    def __init__(self, message: str, worst: pd.DataFrame, inputs: list[str]):
        self.worst = worst
        self.inputs = inputs
        super().__init__(message)


@dataclass
class Written:
    """What write_bundle wrote and measured, and which budgets it suggested."""

    path: Path
    model_bytes: int
    onnx_max_abs_err: float
    holdout_metrics: dict[str, float]
    fallback_metrics: dict[str, float]
    contract: Contract
    suggested: list[str] = field(default_factory=list)
    #: "float32" or "float64": the precision of the export that agreed with training.
    precision: str = "float32"
    #: Why float64 was chosen and what it costs, when it was.
    precision_note: str | None = None


def _split(data, what: str) -> tuple[pd.DataFrame, pd.Series | None]:
    if data is None:
        return None, None
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(f"{what}: give a DataFrame or a (DataFrame, target) pair")
        x, y = data
        if not isinstance(x, pd.DataFrame):
            raise ValueError(f"{what}: the features must be a pandas DataFrame, not {type(x).__name__}")
        y = pd.Series(np.asarray(y).reshape(-1), index=x.index, name=getattr(y, "name", None))
        if len(y) != len(x):
            raise ValueError(f"{what}: {len(x)} rows of features but {len(y)} target values")
        return x, y
    if isinstance(data, pd.DataFrame):
        return data, None
    raise ValueError(f"{what}: give a pandas DataFrame or a (DataFrame, target) pair, not {type(data).__name__}")


def _metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    err = predicted - truth
    out = {"mae": float(np.mean(np.abs(err))), "rmse": float(math.sqrt(np.mean(err**2)))}
    nonzero = truth != 0
    if np.all(nonzero):
        out["mape"] = float(np.mean(np.abs(err[nonzero] / truth[nonzero])) * 100.0)
    return out


def _culprits(pipe, model_session, row: pd.DataFrame, inputs: list[Input], output: str, reference: pd.DataFrame, parity: Parity) -> list[str]:
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
        expected = float(pipe.predict(probe)[0])
        served = float(run_onnx(model_session, probe, inputs, output)[0])
        if abs(served - expected) <= parity.allowance(expected):
            found.append(i.name)
    return found


def check_parity(pipe, model, frames: list[tuple[str, pd.DataFrame]], inputs: list[Input], output: str, parity: Parity, reference: pd.DataFrame) -> float:
    """Runs the export in ONNX Runtime on each frame and compares it with the
    pipeline's own predictions; raises ParityError naming the worst rows and
    the inputs that make them disagree. Returns the largest absolute error."""
    s = session(model)
    worst_err = 0.0
    for label, frame in frames:
        if frame is None or len(frame) == 0:
            continue
        expected = np.asarray(pipe.predict(frame), dtype=np.float64).reshape(-1)
        served = run_onnx(s, frame, inputs, output)
        err = np.abs(served - expected)
        worst_err = max(worst_err, float(np.nanmax(err)) if err.size else 0.0)
        allowance = parity.abs + parity.rel * np.abs(expected)
        bad = ~(err <= allowance)  # NaN never agrees
        if not bad.any():
            continue
        order = np.argsort(-np.where(np.isnan(err), np.inf, err))[: min(5, int(bad.sum()))]
        names = [i.name for i in inputs]
        worst = frame.iloc[order][names].copy()
        worst.insert(0, "row", [f"{label} row {int(k)}" for k in order])
        worst["expected"] = expected[order]
        worst["served"] = served[order]
        culprits = _culprits(pipe, s, frame.iloc[[order[0]]], inputs, output, reference, parity)
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
            f"{float(np.nanmax(np.where(np.isnan(err), np.inf, err))):.6g}{blame}. Worst rows:\n"
            + worst.to_string(index=False),
            worst,
            culprits,
        )
    return worst_err


@dataclass
class _Exported:
    model: Any
    inputs: list[Input]
    max_err: float
    precision: str
    #: For float64: why, for the manifest; and why with what it costs, for the caller.
    reason: str | None = None
    note: str | None = None


def _export_agreeing(pipe, schema, output, parity, frames, reference, precision, compact) -> _Exported:
    """The first export, in the precisions `precision` allows, that agrees
    with training on `frames`; else the float32 export's ParityError, with
    what the float64 export found."""
    tried = list(PRECISIONS) if precision == "auto" else [precision]
    refusals: list[Exception] = []
    models = {}
    for p in tried:
        inputs = with_precision(schema, p)
        try:
            models[p] = export_onnx(pipe, inputs, output, compact=compact, precision=p)
            err = check_parity(pipe, models[p], frames, inputs, output, parity, reference)
        except (ParityError, UnsupportedStep) as e:
            refusals.append(e)
            continue
        exported = _Exported(models[p], inputs, err, p)
        if refusals:
            exported.reason, exported.note = _precision_note(refusals[0], models, schema, inputs, output, frames)
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


def _precision_note(refusal, models, schema, inputs, output, frames) -> tuple[str, str]:
    """Why float64 was chosen, for the manifest; and with what it costs
    against float32 in size and in ONNX Runtime's single-row latency, for
    the caller (a measured time would make the manifest differ run to run)."""
    why = str(refusal).split(" beyond the parity")[0].replace(
        "the exported ONNX model disagrees", "the float32 export disagreed"
    )
    reason = f"precision float64: {why}; the float64 export agrees, with FP64 inputs"
    rows = next(f for _, f in frames if f is not None and len(f))
    p50_32, _ = _measure_latency(models["float32"], rows, schema, output)
    p50_64, _ = _measure_latency(models["float64"], rows, inputs, output)
    size_32, size_64 = (len(models[p].SerializeToString()) for p in PRECISIONS)
    cost = (
        f"{reason}. It costs {size_64 - size_32:+,} bytes ({size_32:,} -> {size_64:,}) and "
        f"{1000 * (p50_64 - p50_32):+.1f} us of single-row p50 in ONNX Runtime ({1000 * p50_32:.1f} -> {1000 * p50_64:.1f} us)"
    )
    return reason, cost


def _version_and_name(out: Path, name: str | None, version: int | None) -> tuple[str, int]:
    folder_version = out.name
    folder_name = out.parent.name
    if version is None:
        if not folder_version.isdigit() or int(folder_version) == 0:
            raise ValueError(
                f"out={str(out)!r}: a bundle is written to <repository>/<model>/<version>/, "
                "and the last folder is not a positive version number; give version= or end the path with it"
            )
        version = int(folder_version)
    if name is None:
        name = folder_name
    if not is_valid_model_name(name):
        raise ValueError(
            f"name={name!r} is not a valid model name (lowercase letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 64 characters)"
        )
    if folder_name != name or folder_version != str(version):
        raise ValueError(
            f"out={str(out)!r}: Preflight reads model '{name}' version {version} from a folder "
            f"<repository>/{name}/{version}/; the path's last two folders are '{folder_name}/{folder_version}'"
        )
    return name, version


def write_bundle(
    model: Pipeline,
    out: str | Path,
    name: str | None = None,
    *,
    train,
    holdout=None,
    samples: int | pd.DataFrame = 500,
    contract: Contract | Mapping[str, Any] | None = None,
    fallback: str | Pipeline | dict | None = "ridge",
    description: str | None = None,
    version: int | None = None,
    output: str | None = None,
    output_range: tuple[float, float] | None = None,
    inputs: Mapping[str, Input | Mapping[str, Any]] | list[Input] | None = None,
    deadline_ms: int | None = 25,
    seed: int = 0,
    overwrite: bool = False,
    quiet: bool = False,
    compact_trees: bool = False,
    precision: str = "auto",
) -> Written:
    """Exports a fitted pipeline and writes a verified Preflight bundle to `out`.

    - `model`: a fitted `Pipeline([ColumnTransformer, regressor])` (see the
      support matrix); a step that cannot be exported faithfully is refused.
    - `out`: `<repository>/<model>/<version>`; `name` and `version` default to
      its last two folders and must agree with them.
    - `train`: the training features, or `(features, target)`; the target is
      needed to fit the fallback (else it is fitted to the model's predictions).
    - `holdout`: `(features, target)` rows not trained on: hold-out.jsonl,
      parity, and the suggested quality budgets.
    - `samples`: how many training rows become verification samples (drawn
      with `seed`), or the rows themselves as a DataFrame.
    - `contract`: a `Contract` or dict of budgets; missing ones are suggested
      from what is measured here, and listed in the result's `suggested`.
    - `fallback`: "ridge" (fit the linear fallback), a fitted pipeline of the
      shape `parts.fallback_pipeline` makes, a fallback.json dict, or None.
    - `inputs`: overrides of the inferred inputs by name (a dict of field
      values or an `Input`), or the complete list of `Input`s.
    - `output` / `output_range`: the output's name (default: the target's
      name, else "prediction") and optional bounds.
    - `compact_trees`: write tree ensembles in ONNX-ML opset 5 form: a file
      a third the size, which loads twice as fast (`compact.py`).
    - `precision`: "auto" exports in float32 and, when that disagrees with
      training, in float64 (FP64 inputs, splits as the learner makes them);
      "float32" or "float64" forces one. The result says which was chosen
      and, for float64, what it costs.

    Before anything is written the export is run in ONNX Runtime on the
    samples and hold-out and compared with the pipeline's predictions; beyond
    the parity tolerance the bundle is refused (ParityError). The bundle is
    written to a staging folder, checked with the rules Preflight applies,
    and moved into place.
    """
    out = Path(out)
    name, version = _version_and_name(out, name, version)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already holds files; a released version is never rewritten (pass overwrite=True for a draft)")
    x_train, y_train = _split(train, "train")
    if x_train is None:
        raise ValueError("train: the training features are required")
    x_hold, y_hold = _split(holdout, "holdout")
    if holdout is not None and y_hold is None:
        raise ValueError("holdout: give (features, target); hold-out rows carry the true value")
    if precision != "auto" and precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: give 'auto' or one of {list(PRECISIONS)}")
    kind, columns, imputed = check_pipeline(model)
    missing = [c for c in columns if c not in x_train.columns]
    if missing:
        raise ValueError(f"train: the pipeline reads column(s) {missing}, which the training DataFrame does not have")

    if isinstance(samples, pd.DataFrame):
        x_samples = samples
    else:
        count = min(int(samples), len(x_train))
        if count < 1:
            raise ValueError("samples: at least one verification sample is needed")
        rng = np.random.default_rng(seed)
        picked = np.sort(rng.choice(len(x_train), size=count, replace=False))
        x_samples = x_train.iloc[picked]
    x_samples = x_samples.reset_index(drop=True)

    # ------------------------------------------------------------- schema
    encoders = _encoder_categories(model)
    frames = [x_train, x_hold, x_samples]
    if isinstance(inputs, list):
        schema = list(inputs)
        names = [i.name for i in schema]
        if sorted(names) != sorted(columns):
            raise ValueError(f"inputs: the list names {names}, but the pipeline reads {columns}")
    else:
        overrides = dict(inputs or {})
        unknown = set(overrides) - set(columns)
        if unknown:
            raise ValueError(f"inputs: override(s) for {sorted(unknown)}, which the pipeline does not read (it reads {columns})")
        schema = []
        for c in [c for c in x_train.columns if c in columns]:
            inferred = infer_input(c, frames, encoders.get(c), imputed=c in imputed)
            schema.append(apply_override(inferred, overrides[c]) if c in overrides else inferred)
    output_name = output or (y_train.name if y_train is not None and isinstance(y_train.name, str) else None) or (
        y_hold.name if y_hold is not None and isinstance(y_hold.name, str) else None
    ) or "prediction"
    if output_name in columns:
        raise ValueError(f"output '{output_name}' has the name of an input; give output=")
    out_feature = Input(output_name, "FP32", *(output_range or (None, None)))

    # ------------------------------------------------------------- export
    c = Contract.of(contract)
    suggested: list[str] = []
    parity = c.parity or DEFAULT_PARITY
    exported = _export_agreeing(
        model, schema, output_name, parity, [("sample", x_samples), ("hold-out", x_hold)], x_train, precision, compact_trees
    )
    onnx_model, schema, max_err = exported.model, exported.inputs, exported.max_err
    if c.parity is None:
        c = replace(c, parity=Parity(abs=max(1e-4, sig_ceil(10 * max_err)), rel=1e-5))
        suggested.append(
            f"contract.parity = {{ abs = {c.parity.abs}, rel = 1e-05 }}: ten times the largest export error "
            f"measured here ({max_err:.3g})"
        )

    # ----------------------------------------------------------- fallback
    train_pred = np.asarray(model.predict(x_train), dtype=np.float64).reshape(-1)
    target = y_train.to_numpy(dtype=np.float64) if y_train is not None else train_pred
    clip = tuple(output_range) if output_range is not None else (float(np.min(target)), float(np.max(target)))
    fb_doc = None
    fb_pipe = None
    if isinstance(fallback, str):
        if fallback != "ridge":
            raise ValueError(f"fallback={fallback!r}: give 'ridge', a fitted fallback pipeline, a fallback.json dict or None")
        fb_pipe = fallback_pipeline(schema).fit(x_train[[i.name for i in schema]], target)
        if y_train is None:
            suggested.append("fallback: fitted to the model's training predictions (train= gave no target)")
    elif isinstance(fallback, Pipeline):
        fb_pipe = fallback
    elif isinstance(fallback, dict):
        fb_doc = fallback
    elif fallback is not None:
        raise ValueError(f"fallback: give 'ridge', a fitted fallback pipeline, a fallback.json dict or None, not {type(fallback).__name__}")
    if fb_pipe is not None:
        fb_doc = fallback_json(fb_pipe, schema, output_name, clip)

    def fallback_predict(frame: pd.DataFrame) -> np.ndarray:
        if fb_pipe is not None:
            return predict_fallback(fb_pipe, frame[[i.name for i in schema]], clip)
        return np.array([evaluate_fallback(fb_doc, [], row_inputs(r, schema)) for _, r in frame.iterrows()])

    # ------------------------------------------------------ measured budgets
    hold_metrics: dict[str, float] = {}
    fb_metrics: dict[str, float] = {}
    if x_hold is not None:
        hold_metrics = _metrics(y_hold.to_numpy(dtype=np.float64), np.asarray(model.predict(x_hold), dtype=np.float64).reshape(-1))
        if fb_doc is not None:
            fb_metrics = _metrics(y_hold.to_numpy(dtype=np.float64), fallback_predict(x_hold))
    if c.quality is None and hold_metrics:
        c = replace(c, quality=Quality("mae", max=sig_ceil(1.10 * hold_metrics["mae"], 3), max_regression=0.05))
        suggested.append(f"contract.quality: mae at most {c.quality.max}, ten percent over the hold-out MAE {hold_metrics['mae']:.4g}")
    elif c.quality is not None and c.quality.max is None and c.quality.min is None and hold_metrics.get(c.quality.metric) is not None:
        measured = hold_metrics[c.quality.metric]
        c = replace(c, quality=replace(c.quality, max=sig_ceil(1.10 * measured, 3)))
        suggested.append(f"contract.quality: {c.quality.metric} at most {c.quality.max}, ten percent over the hold-out's {measured:.4g}")
    if c.fallback is None and fb_metrics:
        c = replace(c, fallback=Quality("mae", max=sig_ceil(1.10 * fb_metrics["mae"], 3)))
        suggested.append(f"contract.fallback: mae at most {c.fallback.max}, ten percent over the fallback's hold-out MAE {fb_metrics['mae']:.4g}")
    model_bytes = onnx_model.SerializeToString()
    if c.size is None:
        c = replace(c, size=Size(max_model_bytes=int(math.ceil(1.5 * len(model_bytes) / 1e5) * 100_000), max_growth=0.25))
        suggested.append(f"contract.size: at most {c.size.max_model_bytes} bytes, half again the artifact's {len(model_bytes)}, rounded up")
    if c.latency is None:
        p50, p99 = _measure_latency(onnx_model, x_samples, schema, output_name)
        c = replace(c, latency=Latency(p50_ms=max(5.0, sig_ceil(10 * p50)), p99_ms=max(25.0, sig_ceil(10 * p99))))
        suggested.append(
            f"contract.latency: p50 {c.latency.p50_ms} ms and p99 {c.latency.p99_ms} ms, at least ten times "
            f"ONNX Runtime's single-row p50 {p50:.3g} ms and p99 {p99:.3g} ms measured here (a server adds its own time)"
        )

    # -------------------------------------------------------------- write
    packages = installed_versions(BASE_PACKAGES + list(kind.packages))
    text = manifest_toml(
        name=name,
        version=version,
        inputs=schema,
        outputs=[out_feature],
        contract=c,
        packages=packages,
        description=description,
        fallback_file="fallback.json" if fb_doc is not None else None,
        deadline_ms=deadline_ms,
        runtime_comment=exported.reason,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging_root = Path(tempfile.mkdtemp(prefix=f".{name}-{version}-", dir=out.parent))
    try:
        staging = staging_root / name / str(version)
        staging.mkdir(parents=True)
        (staging / "model.onnx").write_bytes(model_bytes)
        (staging / "manifest.toml").write_text(text)
        sample_pred = np.asarray(model.predict(x_samples), dtype=np.float64).reshape(-1)
        sample_fb = fallback_predict(x_samples) if fb_doc is not None else None
        if fb_doc is not None:
            write_json(staging / "fallback.json", fb_doc)
        rows = []
        for n, (_, r) in enumerate(x_samples.iterrows()):
            row = {"id": f"s{n:04d}", "inputs": row_inputs(r, schema), "outputs": {output_name: float(sample_pred[n])}}
            if sample_fb is not None:
                row["fallback_outputs"] = {output_name: float(sample_fb[n])}
            rows.append(row)
        write_jsonl(staging / "samples.jsonl", rows, schema, [out_feature])
        if x_hold is not None:
            hold_rows = [
                {"id": f"h{n:04d}", "inputs": row_inputs(r, schema), "target": {output_name: float(t)}}
                for n, ((_, r), t) in enumerate(zip(x_hold.iterrows(), y_hold.to_numpy(dtype=np.float64)))
            ]
            write_jsonl(staging / "holdout.jsonl", hold_rows, schema, [out_feature])
        write_json(staging / "reference.json", reference_json(x_train, schema, {output_name: train_pred}))
        checked = check_bundle(staging)
        if fb_doc is not None and isinstance(fallback, dict):
            parse_fallback((staging / "fallback.json").read_text(), staging / "fallback.json", checked.manifest)
        # The artifact as written loads and answers one row.
        session(str(staging / "model.onnx")).run(None, {k: v[:1] for k, v in _feed(x_samples, schema).items()})
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    written = Written(
        out, len(model_bytes), max_err, hold_metrics, fb_metrics, c, suggested, exported.precision, exported.note
    )
    if not quiet:
        print(
            f"preflight-bundle: wrote {out} ({len(model_bytes)} bytes of ONNX in {exported.precision}, "
            f"export error {max_err:.3g})",
            file=sys.stderr,
        )
        if exported.note:
            print(f"  {exported.note}", file=sys.stderr)
        for s in suggested:
            print(f"  suggested {s}", file=sys.stderr)
    return written


def _feed(frame, schema):
    from .schema import onnx_feed

    return onnx_feed(frame, schema)


def _measure_latency(onnx_model, frame: pd.DataFrame, schema: list[Input], output: str, rows: int = 200) -> tuple[float, float]:
    """ONNX Runtime's single-row latency on up to `rows` samples, in ms (p50, p99)."""
    s = session(onnx_model)
    from .schema import onnx_feed

    feed = onnx_feed(frame.head(rows), schema)
    n = len(frame.head(rows))
    times = []
    for k in range(n):
        one = {name: v[k : k + 1] for name, v in feed.items()}
        start = time.perf_counter()
        s.run([output], one)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def _encoder_categories(pipe: Pipeline) -> dict[str, list[str]]:
    """The categories each one-hot-encoded column's fitted encoder knows."""
    from sklearn.preprocessing import OneHotEncoder

    found: dict[str, list[str]] = {}
    pre = pipe.steps[0][1]
    for _, t, cols in getattr(pre, "transformers_", []):
        steps = t.steps if isinstance(t, Pipeline) else [(None, t)]
        for _, step in steps:
            if isinstance(step, OneHotEncoder) and hasattr(step, "categories_"):
                for col, cats in zip(cols, step.categories_):
                    found[col] = [str(v) for v in cats]
    return found
