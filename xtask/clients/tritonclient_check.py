"""A real third-party client against preflight-serve.

Usage: python tritonclient_check.py URL BUNDLE_DIR [http|grpc]

Uses NVIDIA's tritonclient, its HTTP client or its gRPC one, exactly as a
Triton user would: liveness, readiness, model metadata, and an inference on
the bundle's verification samples, compared with the training-time outputs
within the manifest's parity tolerance: a classifier's probabilities within
it, its labels exactly. Exits non-zero with a message on any mismatch.

Over HTTP the rows with a missing value are left out (below); over gRPC they
are sent, the missing values as NaN, which is how gRPC carries them.
"""

import json
import sys
import time
import tomllib
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_, "BYTES": np.object_}


def ready(client: httpclient.InferenceServerClient) -> bool:
    try:
        return client.is_server_ready()
    except Exception:  # Not listening yet.
        return False


def check_nan_refused_grpc(client, name: str, version: str, manifest: dict, sample: dict) -> None:
    """Over gRPC a NaN is a missing value: in an input that is not nullable,
    INVALID_ARGUMENT naming it, not an internal error."""
    strict = [s["name"] for s in manifest["inputs"] if s["datatype"] in ("FP32", "FP64") and not s.get("nullable")]
    if not strict:
        return
    inputs = []
    for spec in manifest["inputs"]:
        value = sample["inputs"][spec["name"]]
        missing = value is None or spec["name"] == strict[0]
        array = np.array([[np.nan if missing else value]], dtype=NUMPY[spec["datatype"]])
        tensor = grpcclient.InferInput(spec["name"], [1, 1], spec["datatype"])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    try:
        client.infer(name, inputs, model_version=version)
    except Exception as error:  # tritonclient raises InferenceServerException.
        message = str(error)
        assert "INVALID_ARGUMENT" in message and f"'{strict[0]}'" in message and "not nullable" in message, message
        return
    sys.exit(f"a NaN in the non-nullable '{strict[0]}' was accepted over gRPC")


def check_nan_refused(client, name: str, version: str, manifest: dict, sample: dict) -> None:
    """A NaN sent by tritonclient is a 400 that says what to do, not a 500."""
    inputs = []
    for spec in manifest["inputs"]:
        value = sample["inputs"][spec["name"]]
        dtype = NUMPY[spec["datatype"]]
        array = np.array([[np.nan if value is None else value]], dtype=dtype)
        tensor = httpclient.InferInput(spec["name"], [1, 1], spec["datatype"])
        tensor.set_data_from_numpy(array, binary_data=False)
        inputs.append(tensor)
    try:
        client.infer(name, inputs, model_version=version)
    except Exception as error:  # tritonclient raises InferenceServerException.
        message = str(error)
        assert message.startswith("[400]") and "send null" in message, message
        return
    sys.exit("a bare NaN token was accepted")


def main() -> None:
    url, bundle = sys.argv[1], Path(sys.argv[2])
    protocol = sys.argv[3] if len(sys.argv) > 3 else "http"
    module = {"http": httpclient, "grpc": grpcclient}[protocol]
    manifest = tomllib.loads((bundle / "manifest.toml").read_text())
    name, version = manifest["model"]["name"], str(manifest["model"]["version"])
    samples = [json.loads(line) for line in (bundle / "samples.jsonl").read_text().splitlines() if line.strip()]
    # tritonclient writes a NumPy NaN as the bare token NaN, which is not JSON
    # and which the server refuses (docs/serving.md); its JSON mode cannot send
    # null. Rows with a missing value are left to the server's own tests.
    with_null = [s for s in samples if None in s["inputs"].values()]
    if protocol == "http":
        samples = [s for s in samples if None not in s["inputs"].values()]
    assert with_null and samples, "the samples should hold rows with and without nulls"

    client = module.InferenceServerClient(url=url.removeprefix("http://"))
    deadline = time.monotonic() + 60
    while not ready(client):
        if time.monotonic() > deadline:
            sys.exit(f"{url}: not ready within 60 s")
        time.sleep(0.1)
    assert client.is_server_live(), "server not live"
    assert client.is_model_ready(name, version), f"{name} {version} not ready"
    meta = client.get_model_metadata(name, version, **({"as_json": True} if protocol == "grpc" else {}))
    declared = [i["name"] for i in manifest["inputs"]]
    assert [i["name"] for i in meta["inputs"]] == declared, meta

    inputs = []
    for spec in manifest["inputs"]:
        values = [s["inputs"][spec["name"]] for s in samples]
        if spec["datatype"] == "BYTES":
            array = np.array(values, dtype=np.object_).reshape(-1, 1)
        else:
            array = np.array([np.nan if v is None else v for v in values], dtype=NUMPY[spec["datatype"]]).reshape(-1, 1)
        tensor = module.InferInput(spec["name"], list(array.shape), spec["datatype"])
        if protocol == "http":
            tensor.set_data_from_numpy(array, binary_data=False)
        else:
            tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    if protocol == "http":
        outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=False) for o in manifest["outputs"]]
    else:
        outputs = [grpcclient.InferRequestedOutput(o["name"]) for o in manifest["outputs"]]
    result = client.infer(name, inputs, model_version=version, outputs=outputs)
    if protocol == "http":
        check_nan_refused(client, name, version, manifest, with_null[0])
    else:
        check_nan_refused_grpc(client, name, version, manifest, with_null[0])

    tolerance = manifest["contract"]["parity"]
    classifier = manifest["model"]["task"] == "classification"
    for spec in manifest["outputs"]:
        served = result.as_numpy(spec["name"])
        expected = np.array([s["outputs"][spec["name"]] for s in samples])
        if classifier and "shape" not in spec:
            # The label: its class, exactly, as the label output carries it.
            labels = [v.decode() if isinstance(v, bytes) else v if isinstance(v, str) else v.item() for v in served.reshape(-1)]
            wrong = [k for k, (got, want) in enumerate(zip(labels, expected.tolist())) if got != want]
            if wrong:
                sys.exit(f"{name} {version} label row {wrong[0]}: served {labels[wrong[0]]!r}, trained {expected[wrong[0]]!r}")
        else:
            served = served.astype(np.float64).reshape(expected.shape)
            allowed = tolerance.get("abs", 0.0) + tolerance.get("rel", 0.0) * np.abs(expected)
            excess = (np.abs(served - expected) - allowed).reshape(len(samples), -1).max(axis=1)
            if np.any(excess > 0):
                worst = int(np.argmax(excess))
                sys.exit(f"{name} {version} output '{spec['name']}' row {worst}: served {served[worst]}, trained {expected[worst]}")
        print(
            f"tritonclient {package_version('tritonclient')} ({protocol}): {name} version {version}: "
            f"{len(samples)} rows of '{spec['name']}' as trained"
        )


if __name__ == "__main__":
    main()
