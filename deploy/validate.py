#!/usr/bin/env python3
"""Validates Preflight's Kubernetes manifests offline.

    python deploy/validate.py [PATH...]

PATH is a manifest or a folder of them (`.yaml`, `.yml`, `.json`); the
default is deploy/kserve/ and deploy/kubernetes/. Each document of each file
is checked against a schema, with no cluster and no network:

- KServe's kinds (InferenceService, ServingRuntime, ...) against the
  openAPIV3Schema of the CRDs committed in deploy/kserve/schemas/
  (README.md there says which KServe release they are from), with
  `jsonschema`. Unknown fields are errors wherever the CRD lists the fields
  of an object, as `kubectl apply`'s strict field validation makes them.
- Kubernetes' own kinds against the strict JSON schemas the
  `kubernetes-validate` package carries, for every version in
  KUBERNETES_VERSIONS.

A document whose kind has no schema is an error, so a new manifest cannot go
unchecked. Every error names the file, the document (1-based, with its kind
and name) and the JSON path of the value. Exit codes: 0 valid, 1 invalid,
2 a usage error or missing schemas.
"""

from __future__ import annotations

import argparse
import functools
import importlib.resources
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import referencing
import yaml

DEPLOY = Path(__file__).resolve().parent
DEFAULT_PATHS = (DEPLOY / "kserve", DEPLOY / "kubernetes")
CRD_DIR = DEPLOY / "kserve" / "schemas"

# The oldest Kubernetes minor these manifests are meant for and the newest
# one the pinned kubernetes-validate carries: a field too new for the first
# or removed by the second is caught.
KUBERNETES_VERSIONS = ("1.31", "1.37")

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = DEFINITIONS_ID + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

# libyaml when PyYAML has it: the InferenceService CRD is 2 MB of YAML, which
# the pure-Python loader takes seconds to read.
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SetupError(Exception):
    """Something the validation needs is missing: exit code 2."""


@dataclass(frozen=True)
class Problem:
    file: str
    document: int
    what: str
    path: str
    message: str
    against: str

    def __str__(self) -> str:
        return (
            f"{self.file}: document {self.document} ({self.what}): "
            f"{self.path}: {self.message} [{self.against}]"
        )


def json_path(parts: Any) -> str:
    """`$.spec.containers[0].name` for the path of a value in a document."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


# --- Kubernetes' own kinds -------------------------------------------------


def _kubernetes_dir(version: str) -> importlib.resources.abc.Traversable:
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    folder = root / f"v{version}.0-local-strict"
    if not folder.is_dir():
        raise SetupError(
            f"kubernetes-validate has no schemas for Kubernetes {version}: "
            "install the pins of deploy/requirements.txt"
        )
    return folder


@functools.cache
def kubernetes_definitions(version: str) -> referencing.Resource:
    text = (_kubernetes_dir(version) / "_definitions.json").read_text()
    return referencing.Resource.from_contents(json.loads(text))


@functools.cache
def kubernetes_validator(version: str, api_version: str, kind: str) -> jsonschema.Validator | None:
    """The strict schema of a built-in kind, or None when Kubernetes has no such kind."""
    # kubernetes-validate's file names: `apps/v1` Deployment is
    # deployment-apps-v1.json, `v1` Service service-v1.json,
    # `policy/v1` policy-v1, `rbac.authorization.k8s.io/v1` rbac-v1.
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    file = _kubernetes_dir(version) / f"{kind.lower()}-{group_version}.json"
    if not file.is_file():
        return None
    schema = json.loads(file.read_text())
    registry = referencing.Registry().with_resources(
        [(schema["$id"], referencing.Resource.from_contents(schema)),
         (DEFINITIONS_ID, kubernetes_definitions(version))]
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


# --- KServe's kinds, from the committed CRDs -------------------------------


def structural_to_json_schema(node: Any) -> Any:
    """A CRD's structural OpenAPI v3 schema as a JSON Schema that judges as the API server does.

    - An object that lists its properties takes no others, unless it says
      `x-kubernetes-preserve-unknown-fields`: the API server prunes unknown
      fields, and `kubectl apply` (strict field validation) refuses them.
    - `x-kubernetes-int-or-string` takes an integer or a string.
    - `nullable: true` also takes null.
    - `x-kubernetes-embedded-resource` also takes apiVersion, kind and metadata.
    """
    if isinstance(node, list):
        return [structural_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: structural_to_json_schema(value) for key, value in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@dataclass(frozen=True)
class Crd:
    file: Path
    group: str
    kind: str
    # served version -> validator
    validators: dict[str, jsonschema.Validator]


@functools.cache
def load_crds(crd_dir: Path = CRD_DIR) -> dict[tuple[str, str], tuple[Crd, jsonschema.Validator]]:
    """(apiVersion, kind) -> its CRD and a validator, for every CRD file in crd_dir.

    Cached: the tests validate many manifests in one process.
    """
    files = sorted(p for p in crd_dir.glob("*.yaml") if p.is_file()) if crd_dir.is_dir() else []
    if not files:
        raise SetupError(f"{crd_dir}: no CRD files; see deploy/kserve/schemas/README.md")
    # The CR's metadata is checked as Kubernetes checks every object's
    # (the CRD schema only says `type: object`).
    definitions = kubernetes_definitions(KUBERNETES_VERSIONS[-1])
    out: dict[tuple[str, str], tuple[Crd, jsonschema.Validator]] = {}
    for file in files:
        with file.open() as f:
            crd = yaml.load(f, Loader=Loader)
        if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
            raise SetupError(f"{file}: not a CustomResourceDefinition")
        spec = crd["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        validators = {}
        for version in spec["versions"]:
            if not version.get("served", False):
                continue
            schema = structural_to_json_schema(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {"$ref": OBJECT_META}
            schema["properties"]["apiVersion"] = {"const": f"{group}/{version['name']}"}
            schema["properties"]["kind"] = {"const": kind}
            required = set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"}
            schema["required"] = sorted(required)
            registry = referencing.Registry().with_resource(DEFINITIONS_ID, definitions)
            validator = jsonschema.Draft202012Validator(schema, registry=registry)
            validators[version["name"]] = validator
        entry = Crd(file, group, kind, validators)
        for name, validator in validators.items():
            out[(f"{group}/{name}", kind)] = (entry, validator)
    return out


def crd_provenance(crd_dir: Path = CRD_DIR) -> str:
    """`KServe v0.20.0 CRD`, from the README beside the CRDs."""
    readme = crd_dir / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    match = re.search(r"KServe (v\d+\.\d+\.\d+\S*)", text)
    return f"KServe {match.group(1)} CRD" if match else "KServe CRD"


# --- Files and documents ---------------------------------------------------


def manifest_files(paths: list[Path]) -> list[Path]:
    """Every manifest under paths; the CRDs themselves are schemas, not manifests."""
    files: list[Path] = []
    for path in paths:
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            for file in sorted(path.rglob("*")):
                if (
                    file.is_file()
                    and file.suffix in MANIFEST_SUFFIXES
                    and CRD_DIR.resolve() not in file.resolve().parents
                ):
                    files.append(file)
        else:
            raise SetupError(f"{path}: no such file or folder")
    return files


def documents(text: str) -> Iterator[tuple[int, Any]]:
    """(1-based index, document) for each non-empty YAML document."""
    for index, document in enumerate(yaml.load_all(text, Loader=Loader), start=1):
        if document is not None:
            yield index, document


def describe(document: Any) -> str:
    if not isinstance(document, dict):
        return "not an object"
    kind = document.get("kind", "no kind")
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f"{kind} {name}" if name else str(kind)


def validate_document(
    document: Any,
    crds: dict[tuple[str, str], tuple[Crd, jsonschema.Validator]],
    *,
    file: str,
    index: int,
    crd_source: str = "KServe CRD",
) -> list[Problem]:
    what = describe(document)

    def problem(path: str, message: str, against: str) -> Problem:
        return Problem(file, index, what, path, message, against)

    if not isinstance(document, dict):
        found = type(document).__name__
        return [problem("$", f"a manifest is an object, not {found}", "Kubernetes")]
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        missing = [key for key in ("apiVersion", "kind") if not isinstance(document.get(key), str)]
        return [problem("$", f"{' and '.join(missing)} must be a string", "Kubernetes")]

    problems: list[Problem] = []
    metadata = document.get("metadata")
    if isinstance(metadata, dict) and not (metadata.get("name") or metadata.get("generateName")):
        problems.append(problem("$.metadata", "name or generateName is required", "Kubernetes"))

    if (api_version, kind) in crds:
        crd, validator = crds[(api_version, kind)]
        against = f"{crd_source} {crd.file.name}"
        for error in sorted(validator.iter_errors(document), key=_order):
            problems.append(problem(json_path(error.absolute_path), _message(error), against))
        return problems

    # The same error under several Kubernetes versions is reported once,
    # with every version it holds for.
    found: dict[tuple[str, str], list[str]] = {}
    known = False
    for version in KUBERNETES_VERSIONS:
        validator = kubernetes_validator(version, api_version, kind)
        if validator is None:
            continue
        known = True
        for error in sorted(validator.iter_errors(document), key=_order):
            found.setdefault((json_path(error.absolute_path), _message(error)), []).append(version)
    if not known:
        group = api_version.split("/")[0] if "/" in api_version else ""
        hint = (
            f"add its CRD to {CRD_DIR.relative_to(DEPLOY.parent)}"
            if group and "." in group and not group.endswith("k8s.io")
            else "check apiVersion and kind"
        )
        problems.append(
            problem(
                "$",
                f"no schema for apiVersion {api_version!r} kind {kind!r} in Kubernetes "
                f"{', '.join(KUBERNETES_VERSIONS)} or the KServe CRDs: {hint}",
                "Kubernetes",
            )
        )
    for (path, message), versions in found.items():
        problems.append(problem(path, message, f"Kubernetes {', '.join(versions)}"))
    return problems


def _order(error: jsonschema.ValidationError) -> tuple:
    return tuple(str(part) for part in error.absolute_path)


def _message(error: jsonschema.ValidationError) -> str:
    # An IntOrString or Quantity that is neither: say what each branch wanted.
    if error.validator in ("anyOf", "oneOf") and error.context:
        reasons = sorted({sub.message for sub in error.context})
        return f"{_short(error.instance)} is not valid: {'; or '.join(reasons)}"
    if error.validator == "additionalProperties" and error.validator_value is False:
        return error.message.replace("Additional properties are not allowed", "unknown field(s)")
    return error.message


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_paths(paths: list[Path], crd_dir: Path = CRD_DIR) -> tuple[list[Problem], int, int]:
    """The problems of every manifest under paths, and how many files and documents were read."""
    crds = load_crds(crd_dir)
    crd_source = crd_provenance(crd_dir)
    problems: list[Problem] = []
    files = manifest_files(paths)
    count = 0
    for file in files:
        shown = _shown(file)
        try:
            text = file.read_text()
            docs = list(documents(text))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            message = str(error).replace("\n", " ")
            problems.append(Problem(shown, 0, "unreadable", "$", message, "YAML"))
            continue
        if not docs:
            problems.append(Problem(shown, 0, "empty", "$", "the file has no document", "YAML"))
        for index, document in docs:
            count += 1
            problems.extend(
                validate_document(document, crds, file=shown, index=index, crd_source=crd_source)
            )
    return problems, len(files), count


def _shown(file: Path) -> str:
    try:
        return str(file.resolve().relative_to(DEPLOY.parent))
    except ValueError:
        return str(file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Validate Kubernetes and KServe manifests offline against their schemas."
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="manifests or folders of them (default: deploy/kserve and deploy/kubernetes)",
    )
    args = parser.parse_args(argv)
    paths = args.paths or list(DEFAULT_PATHS)
    try:
        problems, files, count = validate_paths(paths)
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for found in problems:
        print(found, file=sys.stderr)
    if problems:
        print(f"{len(problems)} error(s) in {files} file(s)", file=sys.stderr)
        return 1
    print(
        f"{count} document(s) in {files} file(s) valid against Kubernetes "
        f"{', '.join(KUBERNETES_VERSIONS)} and {crd_provenance()}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
