"""Tests of deploy/validate.py: the committed manifests pass, and each kind of
mistake is caught and named by file, document and JSON path.

    target/deploy-venv/bin/python -m pytest deploy/test_validate.py
"""

from __future__ import annotations

import copy
import hashlib
import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validate  # noqa: E402

DEPLOY = validate.DEPLOY
SERVING_RUNTIME = DEPLOY / "kserve" / "servingruntime.yaml"
INFERENCE_SERVICE = DEPLOY / "kserve" / "inferenceservice.yaml"
DEPLOYMENT = DEPLOY / "kubernetes" / "deployment.yaml"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def write(tmp_path: Path, name: str, *docs: dict) -> Path:
    file = tmp_path / name
    file.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return file


def check(tmp_path: Path, name: str, doc: dict, path: str, message: str) -> None:
    """doc, written to a file, is rejected with one error at path whose message contains message."""
    file = write(tmp_path, name, doc)
    assert validate.main([str(file)]) == 1
    problems, _, _ = validate.validate_paths([file])
    assert [(p.path, message in p.message) for p in problems] == [(path, True)], problems
    assert problems[0].file.endswith(name) and problems[0].document == 1


def test_the_committed_manifests_are_valid(capsys):
    assert validate.main([]) == 0
    out = capsys.readouterr().out
    assert "KServe v0.20.0" in out
    problems, files, documents = validate.validate_paths(list(validate.DEFAULT_PATHS))
    assert problems == []
    # Every manifest is read: the KServe runtime and services, and the plain
    # Deployment, Service, PodDisruptionBudget and claim.
    assert files >= 7 and documents >= 7


# --- A wrong field type ----------------------------------------------------


def test_a_wrong_type_in_a_crd_field_is_rejected(tmp_path):
    doc = load(INFERENCE_SERVICE)
    doc["spec"]["predictor"]["canaryTrafficPercent"] = "10%"
    path = "$.spec.predictor.canaryTrafficPercent"
    check(tmp_path, "isvc.yaml", doc, path, "is not of type 'integer'")


def test_a_wrong_type_in_a_builtin_field_is_rejected(tmp_path):
    doc = load(DEPLOYMENT)
    doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "30s"
    check(
        tmp_path,
        "deployment.yaml",
        doc,
        "$.spec.template.spec.terminationGracePeriodSeconds",
        "is not of type 'integer'",
    )


def test_an_int_or_string_that_is_neither_is_rejected(tmp_path):
    doc = load(SERVING_RUNTIME)
    doc["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = [8080]
    path = "$.spec.containers[0].readinessProbe.httpGet.port"
    check(tmp_path, "sr.yaml", doc, path, "is not of type")


# --- A missing required field ----------------------------------------------


def test_a_missing_required_crd_field_is_rejected(tmp_path):
    doc = load(SERVING_RUNTIME)
    del doc["spec"]["containers"][0]["name"]
    check(tmp_path, "sr.yaml", doc, "$.spec.containers[0]", "'name' is a required property")


def test_a_missing_required_builtin_field_is_rejected(tmp_path):
    doc = load(DEPLOYMENT)
    del doc["spec"]["selector"]
    check(tmp_path, "deployment.yaml", doc, "$.spec", "'selector' is a required property")


def test_a_missing_name_is_rejected(tmp_path):
    doc = load(INFERENCE_SERVICE)
    del doc["metadata"]["name"]
    check(tmp_path, "isvc.yaml", doc, "$.metadata", "name or generateName is required")


# --- An unknown field in a strict place ------------------------------------


def test_an_unknown_crd_field_is_rejected(tmp_path):
    doc = load(INFERENCE_SERVICE)
    # A typo kubectl would refuse, and that the API server would otherwise
    # drop without a word: the canary would silently take all the traffic.
    predictor = doc["spec"]["predictor"]
    predictor["canaryTraficPercent"] = predictor.pop("canaryTrafficPercent")
    check(tmp_path, "isvc.yaml", doc, "$.spec.predictor", "'canaryTraficPercent' was unexpected")


def test_an_unknown_builtin_field_is_rejected(tmp_path):
    doc = load(DEPLOYMENT)
    probe = doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["periodSecond"] = probe.pop("periodSeconds")
    check(
        tmp_path,
        "deployment.yaml",
        doc,
        "$.spec.template.spec.containers[0].readinessProbe",
        "'periodSecond' was unexpected",
    )


def test_an_unknown_field_of_crd_metadata_is_rejected(tmp_path):
    doc = load(SERVING_RUNTIME)
    doc["metadata"]["label"] = {"a": "b"}
    check(tmp_path, "sr.yaml", doc, "$.metadata", "'label' was unexpected")


def test_a_preserve_unknown_fields_object_takes_any_field(tmp_path):
    schema = validate.structural_to_json_schema(
        {
            "type": "object",
            "properties": {
                "open": {
                    "type": "object",
                    "properties": {"a": {}},
                    "x-kubernetes-preserve-unknown-fields": True,
                },
                "closed": {"type": "object", "properties": {"a": {}}},
            },
        }
    )
    assert schema["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["open"]
    assert schema["properties"]["closed"]["additionalProperties"] is False


# --- Everything else the validator reports ---------------------------------


def test_an_unknown_kind_is_an_error_not_a_pass(tmp_path):
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
    }
    check(tmp_path, "monitor.yaml", doc, "$", "no schema for apiVersion 'monitoring.coreos.com/v1'")


def test_every_error_of_every_document_is_reported_with_its_place(tmp_path, capsys):
    good = load(SERVING_RUNTIME)
    bad_runtime = copy.deepcopy(good)
    bad_runtime["spec"]["protocolVersions"] = "v2"
    bad_runtime["spec"]["containers"][0]["imagePullPolicy"] = 1
    bad_deployment = load(DEPLOYMENT)
    bad_deployment["spec"]["replicas"] = "two"
    file = write(tmp_path, "several.yaml", good, bad_runtime, bad_deployment)

    assert validate.main([str(file)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(str(file))]
    assert len(lines) == 3, err
    runtime = "document 2 (ServingRuntime preflight-serve)"
    assert f"{runtime}: $.spec.protocolVersions: 'v2' is not of type 'array'" in err
    assert f"{runtime}: $.spec.containers[0].imagePullPolicy:" in err
    deployment = "document 3 (Deployment preflight-serve)"
    assert f"{deployment}: $.spec.replicas: 'two' is not of type 'integer'" in err
    assert "[Kubernetes 1.31, 1.37]" in err
    assert "3 error(s) in 1 file(s)" in err


def test_a_file_that_is_not_yaml_is_named(tmp_path):
    file = tmp_path / "broken.yaml"
    file.write_text("apiVersion: v1\nkind: [Service\n")
    problems, _, _ = validate.validate_paths([file])
    assert len(problems) == 1
    assert problems[0].file.endswith("broken.yaml") and problems[0].against == "YAML"


def test_a_missing_path_is_a_usage_error(tmp_path, capsys):
    assert validate.main([str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


# --- The committed schemas and the shutdown arithmetic ---------------------


def test_the_crds_are_the_ones_the_readme_names():
    readme = (validate.CRD_DIR / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+\.yaml)` \| .* \| `([0-9a-f]{64})` \|$", readme, re.MULTILINE)
    files = sorted(p.name for p in validate.CRD_DIR.glob("*.yaml"))
    assert sorted(name for name, _ in rows) == files
    for name, digest in rows:
        assert hashlib.sha256((validate.CRD_DIR / name).read_bytes()).hexdigest() == digest, name


def _flag(args: list[str], name: str, default: int) -> int:
    return int(args[args.index(name) + 1]) if name in args else default


@pytest.mark.parametrize(
    "manifest, grace",
    [
        # Plain Kubernetes: the pod's own grace period.
        (DEPLOYMENT, lambda d: d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]),
        # KServe Standard mode: the predictor's pod spec.
        (
            DEPLOY / "kserve" / "inferenceservice-standard.yaml",
            lambda d: d["spec"]["predictor"]["terminationGracePeriodSeconds"],
        ),
        # KServe Knative mode: Knative takes the grace period from the revision's timeout.
        (INFERENCE_SERVICE, lambda d: d["spec"]["predictor"]["timeout"]),
    ],
    ids=["deployment", "kserve-standard", "kserve-knative"],
)
def test_the_grace_period_covers_the_drain_and_the_grace(manifest, grace):
    doc = load(manifest)
    if doc["kind"] == "Deployment":
        args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
    else:
        args = load(SERVING_RUNTIME)["spec"]["containers"][0]["args"]
    # preflight-serve's defaults: --drain-seconds 5, --shutdown-grace-seconds 10.
    needed = _flag(args, "--drain-seconds", 5) + _flag(args, "--shutdown-grace-seconds", 10)
    # At least 5 s beyond them, for the process to exit and its log to flush.
    assert grace(doc) >= needed + 5, (manifest.name, grace(doc), needed)


@pytest.mark.parametrize("manifest", [SERVING_RUNTIME, DEPLOYMENT], ids=["kserve", "kubernetes"])
def test_the_probes_are_the_servers_endpoints(manifest):
    doc = load(manifest)
    spec = doc["spec"] if doc["kind"] == "ServingRuntime" else doc["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    ready = container["readinessProbe"]
    assert ready["httpGet"]["path"] == "/v2/health/ready"
    # Readiness fails within the drain, so the pod is out before it stops accepting.
    drain = _flag(container["args"], "--drain-seconds", 5)
    assert ready["periodSeconds"] * ready["failureThreshold"] < drain
    token = [e for e in container["env"] if e["name"] == "PREFLIGHT_REPOSITORY_TOKEN"]
    assert token and "secretKeyRef" in token[0]["valueFrom"]
