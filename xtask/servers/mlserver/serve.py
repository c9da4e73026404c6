"""Serves a model with Seldon MLServer: a LightGBM booster, the peer of
`cargo xtask bench peers`, or a Preflight bundle's ONNX model, for
`cargo xtask servers`.

Usage: python serve.py PORT MODEL [--grpc-port N] [--parallel-workers N]

Run it with the Python of a virtual environment that has
`xtask/servers/mlserver/requirements.txt` installed. It writes MLServer's
`settings.json` and the model's `model-settings.json` into a temporary
folder, starts `mlserver start` on 127.0.0.1 with the HTTP port PORT (gRPC on
a free port), and waits until `GET /v2/health/ready` answers 200. Then it
prints `listening on http://127.0.0.1:PORT` as the first line on stdout and
stays in the foreground until it is sent SIGTERM or SIGINT, which it forwards
to MLServer. MLServer's own logs go to stderr.

A MODEL that is a file is a booster, served as `eta-lisbon` by
`mlserver_lightgbm.LightGBMModel`, which takes one FP32 `[rows, features]`
input and answers with an output named `predict` (fixtures/peers/eta-lisbon-2/
holds requests and the answers to expect). A MODEL that is a bundle folder is
served under its manifest's name and version by `onnx_runtime.OnnxModel`
(beside this file), which runs its `model.onnx` on the bundle's named inputs.
With `--grpc-port` MLServer's gRPC server listens there, and
`listening on grpc://127.0.0.1:N` follows the first line in the same write. The settings are lean: no debug logging or access log, no metrics
server or metrics middleware, no gzip; `parallel_workers` keeps MLServer's
default (1: inference runs in one worker process) unless `--parallel-workers`
says otherwise (0 runs inference in the server's own process). LightGBM runs
on one OpenMP thread (`OMP_NUM_THREADS=1`).
"""

from __future__ import annotations

import argparse
import json
import tomllib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

MODEL_NAME = "eta-lisbon"
HOST = "127.0.0.1"
# How long MLServer may take to load the model and answer ready.
READY_TIMEOUT_S = 120.0
# How long MLServer may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_taken(port: int) -> bool:
    """Whether something listens on the port already: MLServer would then
    keep running without its HTTP server, and whatever holds the port might
    answer the health check in its place."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As uvicorn binds: connections left in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def model_settings(model: Path) -> dict:
    """The model's `model-settings.json`: a booster's, or a bundle's."""
    if model.is_file():
        return {"name": MODEL_NAME, "implementation": "mlserver_lightgbm.LightGBMModel", "parameters": {"uri": str(model)}}
    manifest = tomllib.loads((model / "manifest.toml").read_text())
    return {
        "name": manifest["model"]["name"],
        "implementation": "onnx_runtime.OnnxModel",
        "parameters": {"uri": str(model / manifest["runtime"]["model"]), "version": str(manifest["model"]["version"])},
    }


def write_settings(folder: Path, http_port: int, grpc_port: int, model_file: Path, parallel_workers: int | None) -> None:
    settings = {
        "debug": False,
        "host": HOST,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_endpoint": None,
        "gzip_enabled": False,
        "load_models_at_startup": True,
        # MLServer keeps its metrics and environments under the working
        # directory by default; keep them in the temporary folder.
        "metrics_dir": str(folder / ".metrics"),
        "environments_dir": str(folder / ".envs"),
    }
    if parallel_workers is not None:
        settings["parallel_workers"] = parallel_workers
    (folder / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    settings = model_settings(model_file)
    model = folder / settings["name"]
    model.mkdir()
    (model / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")


def mlserver_command() -> str:
    """The `mlserver` script of the environment this Python belongs to."""
    beside = Path(sys.executable).parent / "mlserver"
    if beside.exists():
        return str(beside)
    found = shutil.which("mlserver")
    if found is None:
        sys.exit("serve.py: no `mlserver` next to this Python or on PATH")
    return found


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def stop(server: subprocess.Popen, signalled: bool) -> int:
    """Sends SIGTERM to MLServer unless it has had a signal already, waits
    for it, and kills its process group if it lingers or left workers behind."""
    if server.poll() is None and not signalled:
        server.send_signal(signal.SIGTERM)
    try:
        server.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait()
    return server.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int, help="HTTP port on 127.0.0.1")
    parser.add_argument("model_file", type=Path, help="LightGBM text model file (booster.txt), or a bundle folder")
    parser.add_argument("--grpc-port", type=int, default=None, help="MLServer's gRPC port, announced (default: a free one, not announced)")
    parser.add_argument("--parallel-workers", type=int, default=None, help="MLServer's parallel_workers (default: MLServer's)")
    args = parser.parse_args()
    model_file = args.model_file.resolve()
    if not model_file.is_file() and not (model_file / "manifest.toml").is_file():
        sys.exit(f"serve.py: {args.model_file}: neither a booster file nor a bundle folder")

    if port_taken(args.port):
        sys.exit(f"serve.py: {HOST}:{args.port} is in use")

    folder = Path(tempfile.mkdtemp(prefix="preflight-mlserver-"))
    try:
        grpc_port = args.grpc_port if args.grpc_port is not None else free_port()
        write_settings(folder, args.port, grpc_port, model_file, args.parallel_workers)
        # The bundle's runtime, `onnx_runtime.py`, is importable from beside this file.
        path = os.pathsep.join(p for p in [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")] if p)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
        started = time.monotonic()
        # Its own session, so that what it leaves behind can be killed as a group.
        server = subprocess.Popen(
            [mlserver_command(), "start", str(folder)],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr,
            stderr=sys.stderr,
            start_new_session=True,
        )
        received: list[int] = []

        def forward(signum, _frame):
            received.append(signum)
            if server.poll() is None:
                server.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)

        health = f"http://{HOST}:{args.port}/v2/health/ready"
        while not ready(health):
            if received:
                stop(server, signalled=True)
                sys.exit(1)
            if server.poll() is not None:
                sys.exit(f"serve.py: mlserver exited with status {server.returncode} before it was ready")
            if time.monotonic() - started > READY_TIMEOUT_S:
                stop(server, signalled=False)
                sys.exit(f"serve.py: mlserver was not ready within {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
        lines = f"listening on http://{HOST}:{args.port}\n"
        if args.grpc_port is not None:
            lines += f"listening on grpc://{HOST}:{grpc_port}\n"
        sys.stdout.write(lines)
        sys.stdout.flush()
        print(f"serve.py: mlserver ready in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)

        while server.poll() is None:
            try:
                server.wait(1.0)
            except subprocess.TimeoutExpired:
                pass
            if received:
                break
        code = stop(server, signalled=bool(received))
        # Stopped on request: a clean exit whatever MLServer's status.
        sys.exit(0 if received else (code or 1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
