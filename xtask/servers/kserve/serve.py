"""Serves one bundle's ONNX model with KServe's Python model server, as a team
that already runs KServe would: a `kserve.Model` that runs ONNX Runtime.

Usage: python serve.py PORT BUNDLE_DIR [--grpc-port GRPC_PORT]

Run it with the Python of a virtual environment that has
`xtask/servers/kserve/requirements.txt` installed. The model is served under
its manifest's name on 127.0.0.1:PORT over REST, and with GRPC_PORT over
KServe's gRPC server too (off without it).
It takes the Open Inference Protocol's named inputs, one `[rows, 1]` tensor
each, feeds them to the graph as the graph's own input types, and answers
each graph output under its name. Nothing here adapts KServe to Preflight:
its routes, its metadata (`"versions": null`), its errors and its handling of
nulls are KServe's own. It prints `listening on http://127.0.0.1:PORT` once
`GET /v2/health/ready` answers (and `listening on grpc://127.0.0.1:GRPC_PORT`
in the same write, once that port takes connections), and stays in the
foreground.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import tomllib
import urllib.request
import uuid
from pathlib import Path

# Standard output carries one line, the announcement; everything KServe and
# uvicorn print goes to standard error.
ANNOUNCE = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer  # noqa: E402

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
# The graph's input types, as numpy reads the request's data into them.
FEED_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}
# The answer's datatype for each graph output type.
OUTPUT_TYPES = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64"}


class OnnxModel(Model):
    def __init__(self, name: str, model_file: Path) -> None:
        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name: i.type for i in self.session.get_inputs()}
        self.ready = True

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feeds = {}
        for tensor in payload.inputs:
            kind = self.inputs.get(tensor.name)
            values = tensor.as_numpy()
            if kind == "tensor(string)":
                values = np.array([v.decode() if isinstance(v, bytes) else v for v in values.reshape(-1)], dtype=object)
            else:
                values = values.astype(FEED_TYPES.get(kind, np.float32))
            feeds[tensor.name] = values.reshape(-1, 1)
        outputs = []
        for meta, value in zip(self.session.get_outputs(), self.session.run(None, feeds)):
            value = np.asarray(value)
            if value.ndim == 2 and value.shape[1] == 1:
                value = value.reshape(-1)
            datatype = OUTPUT_TYPES.get(value.dtype, "BYTES")
            data = value.astype(object).tolist() if datatype == "BYTES" else value
            outputs.append(InferOutput(name=meta.name, shape=list(value.shape), datatype=datatype, data=data))
        return InferResponse(response_id=payload.id or str(uuid.uuid4()), model_name=self.name, infer_outputs=outputs)


def rest_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/v2/health/ready", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def grpc_listening(port: int | None) -> bool:
    if port is None:
        return True
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def announce_when_ready(port: int, grpc_port: int | None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if rest_ready(port) and grpc_listening(grpc_port):
            lines = f"listening on http://{HOST}:{port}\n"
            if grpc_port is not None:
                lines += f"listening on grpc://{HOST}:{grpc_port}\n"
            ANNOUNCE.write(lines)
            ANNOUNCE.flush()
            return
        time.sleep(0.1)
    print(f"KServe was not ready within {READY_TIMEOUT_S} s", file=sys.stderr, flush=True)


def main() -> None:
    port, bundle = int(sys.argv[1]), Path(sys.argv[2])
    grpc_port = int(sys.argv[4]) if sys.argv[3:4] == ["--grpc-port"] else None
    manifest = tomllib.loads((bundle / "manifest.toml").read_text())
    model = OnnxModel(manifest["model"]["name"], bundle / manifest["runtime"]["model"])
    threading.Thread(target=announce_when_ready, args=(port, grpc_port), daemon=True).start()
    grpc = {"enable_grpc": True, "grpc_port": grpc_port} if grpc_port is not None else {"enable_grpc": False}
    server = ModelServer(http_port=port, workers=1, enable_latency_logging=False, **grpc)
    # A line per request would bury the run's own output.
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
