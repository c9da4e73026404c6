"""preflight-serve runs overlapping requests to a model together only when
the model answers the same, bit for bit, in a run with others as alone
(docs/serving.md, "Gathered runs").

A tree ensemble does. A linear model exported by skl2onnx (ONNX-ML
`LinearRegressor`) does not: ONNX Runtime answers some rows of a run of
several differently in the last bits. So the server must gather the first
and run the second's requests apart, and every answer must be the one the
request gets alone.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, fitted, needs_binaries, preflight_binary, preprocessing
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

from preflight_bundle import write_bundle
from preflight_bundle.check import load_manifest
from preflight_bundle.export import TARGET_OPSET, run_onnx, session

TREES, LINEAR = "eta-trees", "eta-linear"


def _linear_model(bundle: Path, x, y) -> None:
    """Replaces the bundle's trees by a linear model on the same inputs."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    manifest = load_manifest(bundle / "manifest.toml")
    types = {"FP32": FloatTensorType, "INT64": Int64TensorType, "BYTES": StringTensorType}
    pipe = Pipeline([("pre", preprocessing()), ("model", Ridge())]).fit(x, y)
    model = to_onnx(
        pipe,
        initial_types=[(i.name, types[i.datatype]([None, 1])) for i in manifest.inputs],
        final_types=[(manifest.outputs[0].name, FloatTensorType([None, 1]))],
        target_opset=TARGET_OPSET,
    )
    (bundle / "model.onnx").write_bytes(model.SerializeToString())


def _differs_in_a_run(bundle: Path, x) -> bool:
    """Whether ONNX Runtime answers some row of `x` differently alone and in
    a run of its first rows, of 2 rows or more."""
    manifest = load_manifest(bundle / "manifest.toml")
    model = session(str(bundle / "model.onnx"))
    output = manifest.outputs[0].name
    alone = np.concatenate([run_onnx(model, x.iloc[[i]], manifest.inputs, output) for i in range(len(x))])
    runs = (run_onnx(model, x.iloc[:n], manifest.inputs, output) for n in range(2, len(x) + 1))
    return any(run.tobytes() != alone[: len(run)].tobytes() for run in runs)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _request(manifest, row: dict) -> dict:
    return {
        "inputs": [
            {"name": i.name, "shape": [1, 1], "datatype": i.datatype, "data": [row[i.name]]}
            for i in manifest.inputs
        ]
    }


@needs_binaries
def test_overlapping_requests_run_together_only_where_the_answers_stay_the_same(tmp_path, data):
    x, y, _, _ = data
    models = tmp_path / "models"
    for name in (TREES, LINEAR):
        write_bundle(
            fitted("sklearn-gbdt", x, y),
            models / name / "1",
            train=(x, y),
            samples=40,
            quiet=True,
        )
    _linear_model(models / LINEAR / "1", x, y)
    sample = x.head(8).reset_index(drop=True)
    assert _differs_in_a_run(models / LINEAR / "1", sample), "the linear model must answer a row differently in a run"
    assert not _differs_in_a_run(models / TREES / "1", sample)

    serve = preflight_binary().parent / "preflight-serve"
    library = ROOT / "target" / "ort" / "libonnxruntime.so"
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        # However slow the machine, no request is shed.
        args = ["--models", str(models), "--addr", "127.0.0.1:0", "--ort-lib", str(library)]
        args += ["--log-format", "json", "--queue-wait-ms", "5000"]
        server = subprocess.Popen(
            [str(serve), *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        url = server.stdout.readline().strip().removeprefix("listening on ")
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{url}/v2/health/ready", timeout=5)
                break
            except OSError:
                time.sleep(0.05)
        samples = (models / LINEAR / "1" / "samples.jsonl").read_text().splitlines()
        rows = [json.loads(line)["inputs"] for line in samples]
        decisions: dict[str, str] = {}
        for name in (TREES, LINEAR):
            manifest = load_manifest(models / name / "1" / "manifest.toml")
            path = f"{url}/v2/models/{name}/versions/1/infer"
            requests = [_request(manifest, row) for row in rows]
            alone = [_post(path, r)["outputs"] for r in requests]
            with ThreadPoolExecutor(16) as pool:
                for _ in range(100):
                    overlapping = list(pool.map(lambda r: _post(path, r)["outputs"], requests))
                    assert overlapping == alone, f"{name}: an answer with others differs from alone"
                    decisions = _decisions(log)
                    if name in decisions:
                        break
        assert decisions.get(TREES) == "overlapping requests run together", decisions
        assert decisions.get(LINEAR) == "overlapping requests run apart", decisions
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
        linear_runs = f'preflight_model_gathered_runs_total{{model="{LINEAR}",version="1"}} 0'
        assert linear_runs in metrics, metrics
    finally:
        server.terminate()
        server.wait(timeout=30)


def _decisions(log: Path) -> dict[str, str]:
    """Each model's gathering decision, from the server's JSON log."""
    found = {}
    for line in log.read_text().splitlines():
        event = json.loads(line)
        message = event.get("message", "")
        if message.startswith("overlapping requests run"):
            found[event["model"]] = message.split(":")[0]
    return found
