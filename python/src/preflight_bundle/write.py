"""`write_bundle`: one call at the end of training writes a verified bundle."""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from .check import check_bundle, evaluate_fallback, is_valid_model_name, parse_fallback
from .agree import ParityError, export_agreeing, measure_latency
from .contract import Contract, Latency, Parity, Quality, Size
from .export import PRECISIONS, check_pipeline, session
from .probes import DEFAULT_BUDGET, Probes, write_probes
from .parts import installed_versions, manifest_toml, reference_json, sig_ceil, write_json, write_jsonl
from .schema import Input, apply_override, infer_input, onnx_feed, row_inputs
from .tasks import task_of

# What parity must hold to when the caller gives no tolerance: BUNDLE.md's example.
DEFAULT_PARITY = Parity(abs=1e-3, rel=1e-4)
BASE_PACKAGES = ["scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas"]


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
    #: The probe rows written to probes.jsonl, and the splits they reach.
    probes: Probes | None = None


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
    fallback: str | Pipeline | dict | None = "linear",
    description: str | None = None,
    version: int | None = None,
    output: str | tuple[str, str] | None = None,
    output_range: tuple[float, float] | None = None,
    inputs: Mapping[str, Input | Mapping[str, Any]] | list[Input] | None = None,
    deadline_ms: int | None = 25,
    seed: int = 0,
    overwrite: bool = False,
    quiet: bool = False,
    compact_trees: bool = False,
    precision: str = "auto",
    probes: int = DEFAULT_BUDGET,
) -> Written:
    """Exports a fitted pipeline and writes a verified Preflight bundle to `out`.

    - `model`: a fitted `Pipeline([ColumnTransformer, estimator])`, a
      regressor or a classifier (see the support matrix); a step that cannot
      be exported faithfully is refused.
    - `out`: `<repository>/<model>/<version>`; `name` and `version` default to
      its last two folders and must agree with them.
    - `train`: the training features, or `(features, target)`; the target is
      needed to fit the fallback (else it is fitted to the model's
      predictions). A classifier's target is its labels.
    - `holdout`: `(features, target)` rows not trained on: hold-out.jsonl,
      parity, and the suggested quality budgets.
    - `samples`: how many training rows become verification samples (drawn
      with `seed`), or the rows themselves as a DataFrame.
    - `contract`: a `Contract` or dict of budgets; missing ones are suggested
      from what is measured here, and listed in the result's `suggested`.
    - `fallback`: "linear" (fit the task's linear fallback: a ridge
      regression, or a logistic regression for a classifier; "ridge" is the
      same), a fitted pipeline of the shape `parts.fallback_pipeline` makes
      (with `LogisticRegression` for a classifier), a fallback.json dict, or
      None.
    - `inputs`: overrides of the inferred inputs by name (a dict of field
      values or an `Input`), or the complete list of `Input`s.
    - `output` / `output_range`: the output's name (default: the target's
      name, else "prediction") and optional bounds; for a classifier, the
      names of its label and probabilities (default `("label",
      "probabilities")`), and no range.
    - `compact_trees`: write tree ensembles in ONNX-ML opset 5 form: a file
      a third the size, which loads twice as fast (`compact.py`).
    - `precision`: "auto" exports in float32 and, when that disagrees with
      training, in float64 (FP64 inputs, splits as the learner makes them);
      "float32" or "float64" forces one. The result says which was chosen
      and, for float64, what it costs.
    - `probes`: at most this many rows at the trees' split thresholds
      (`probes.jsonl`; 0 writes none). The export must agree with training
      on them too, so "auto" moves to float64 where float32 rounds a split.

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
    if kind.task == "regression":
        output = output or _target_name(y_train, y_hold)
    target = y_train.to_numpy() if y_train is not None and kind.task == "regression" else None
    task = task_of(kind, model.steps[-1][1], output, output_range, target)
    for o in task.outputs:
        if o.name in columns:
            raise ValueError(f"output '{o.name}' has the name of an input; give output=")

    # ------------------------------------------------------------- export
    c = Contract.of(contract)
    suggested: list[str] = []
    parity = c.parity or DEFAULT_PARITY
    exported = export_agreeing(
        task, model, schema, parity, [("sample", x_samples), ("hold-out", x_hold)], x_train, precision, compact_trees, probes
    )
    onnx_model, schema, max_err = exported.model, exported.inputs, exported.max_err
    if c.parity is None:
        c = replace(c, parity=Parity(abs=max(1e-4, sig_ceil(10 * max_err)), rel=1e-5))
        suggested.append(
            f"contract.parity = {{ abs = {c.parity.abs}, rel = 1e-05 }}: ten times the largest export error "
            f"measured here ({max_err:.3g})"
        )

    # ----------------------------------------------------------- fallback
    features = [i.name for i in schema]
    train_pred = task.expected(model, x_train)
    fb_doc = None
    fb_pipe = None
    if isinstance(fallback, str):
        if fallback not in ("linear", "ridge"):
            raise ValueError(f"fallback={fallback!r}: give 'linear', a fitted fallback pipeline, a fallback.json dict or None")
        target = y_train if y_train is not None else pd.Series(task.output_rows(train_pred)).map(lambda r: next(iter(r.values())))
        fb_pipe = task.fit_fallback(schema, x_train[features], target)
        if y_train is None:
            suggested.append("fallback: fitted to the model's training predictions (train= gave no target)")
    elif isinstance(fallback, Pipeline):
        fb_pipe = fallback
    elif isinstance(fallback, dict):
        fb_doc = fallback
    elif fallback is not None:
        raise ValueError(f"fallback: give 'linear', a fitted fallback pipeline, a fallback.json dict or None, not {type(fallback).__name__}")
    if fb_pipe is not None:
        fb_doc = task.fallback_json(fb_pipe, schema)

    def fallback_predict(frame: pd.DataFrame) -> np.ndarray:
        if fb_pipe is not None:
            return task.fallback_expected(fb_pipe, frame[features])
        return _evaluated(task, fb_doc, frame, schema)

    # ------------------------------------------------------ measured budgets
    hold_metrics: dict[str, float] = {}
    fb_metrics: dict[str, float] = {}
    if x_hold is not None:
        hold_metrics = task.metrics(y_hold, task.expected(model, x_hold))
        if fb_doc is not None:
            fb_metrics = task.metrics(y_hold, fallback_predict(x_hold))
    c = _suggest_quality(task, c, hold_metrics, fb_metrics, suggested)
    model_bytes = onnx_model.SerializeToString()
    if c.size is None:
        c = replace(c, size=Size(max_model_bytes=int(math.ceil(1.5 * len(model_bytes) / 1e5) * 100_000), max_growth=0.25))
        suggested.append(f"contract.size: at most {c.size.max_model_bytes} bytes, half again the artifact's {len(model_bytes)}, rounded up")
    if c.latency is None:
        p50, p99 = measure_latency(onnx_model, x_samples, schema)
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
        outputs=task.outputs,
        contract=c,
        packages=packages,
        task=task.task,
        classes=getattr(task, "classes", None),
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
        sample_outputs = task.output_rows(task.expected(model, x_samples))
        sample_fb = task.output_rows(fallback_predict(x_samples)) if fb_doc is not None else None
        if fb_doc is not None:
            write_json(staging / "fallback.json", fb_doc)
        rows = []
        for n, (_, r) in enumerate(x_samples.iterrows()):
            row = {"id": f"s{n:04d}", "inputs": row_inputs(r, schema), "outputs": sample_outputs[n]}
            if sample_fb is not None:
                row["fallback_outputs"] = sample_fb[n]
            rows.append(row)
        write_jsonl(staging / "samples.jsonl", rows, schema, task.outputs)
        write_probes(staging / "probes.jsonl", exported.probes, task, model, schema)
        if x_hold is not None:
            targets = task.target_rows(y_hold)
            hold_rows = [
                {"id": f"h{n:04d}", "inputs": row_inputs(r, schema), "target": targets[n]}
                for n, (_, r) in enumerate(x_hold.iterrows())
            ]
            write_jsonl(staging / "holdout.jsonl", hold_rows, schema, task.outputs)
        write_json(staging / "reference.json", reference_json(x_train, schema, outputs=task.reference_outputs(train_pred)))
        checked = check_bundle(staging)
        if fb_doc is not None and isinstance(fallback, dict):
            parse_fallback((staging / "fallback.json").read_text(), staging / "fallback.json", checked.manifest)
        # The artifact as written loads and answers one row.
        session(str(staging / "model.onnx")).run(None, {k: v[:1] for k, v in onnx_feed(x_samples, schema).items()})
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    written = Written(
        out, len(model_bytes), max_err, hold_metrics, fb_metrics, c, suggested, exported.precision, exported.note,
        exported.probes,
    )
    if not quiet:
        print(
            f"preflight-bundle: wrote {out} ({len(model_bytes)} bytes of ONNX in {exported.precision}, "
            f"export error {max_err:.3g})",
            file=sys.stderr,
        )
        if exported.note:
            print(f"  {exported.note}", file=sys.stderr)
        if exported.probes is not None and len(exported.probes.frame):
            p = exported.probes
            print(
                f"  {len(p.frame)} probe rows at {p.probed} of the trees' {p.thresholds} thresholds, "
                f"either side of {p.reached} of {p.splits} splits",
                file=sys.stderr,
            )
        for s in suggested:
            print(f"  suggested {s}", file=sys.stderr)
    return written


def _target_name(y_train, y_hold) -> str:
    """The output's name: the target's, else `prediction`."""
    for y in (y_train, y_hold):
        if y is not None and isinstance(y.name, str):
            return y.name
    return "prediction"


def _evaluated(task, fallback: dict, frame: pd.DataFrame, schema: list[Input]) -> np.ndarray:
    """A fallback.json dict's predictions, as Preflight evaluates it, as slots."""
    rows = [evaluate_fallback(fallback, [], row_inputs(r, schema)) for _, r in frame.iterrows()]
    if task.label_slot is None:
        return np.array(rows, dtype=np.float64).reshape(-1, 1)
    probabilities = np.array(rows, dtype=np.float64)
    return np.column_stack([probabilities.argmax(axis=1).astype(np.float64), probabilities])


def _suggest_quality(task, c: Contract, hold: dict, fb: dict, suggested: list[str]) -> Contract:
    """The contract with the quality and fallback budgets it leaves out, from
    the hold-out; a budget without a bound gets one from what was measured."""
    if c.quality is None and hold:
        quality, why = task.suggested_quality(hold)
        c = replace(c, quality=quality)
        suggested.append(f"contract.quality: {why}")
    elif isinstance(c.quality, Quality) and c.quality.max is None and c.quality.min is None and hold.get(c.quality.metric) is not None:
        measured = hold[c.quality.metric]
        c = replace(c, quality=replace(c.quality, max=sig_ceil(1.10 * measured, 3)))
        suggested.append(f"contract.quality: {c.quality.metric} at most {c.quality.max}, ten percent over the hold-out's {measured:.4g}")
    if c.fallback is None and fb:
        quality, why = task.suggested_fallback(fb)
        c = replace(c, fallback=quality)
        suggested.append(f"contract.fallback: {why}")
    return c


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
