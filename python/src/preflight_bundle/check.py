"""Checks a bundle with the rules of Preflight's `preflight-bundle` crate.

Every rule here mirrors one in `bundle/src/*.rs`, with the same message, so
that a bundle this module accepts is one `preflight verify` opens, and an
error names the same file, key and (where known) line. The pytest suite and
the crate's tests run both over the error fixtures in
`python/tests/errors/` to keep the two in agreement.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.toml"
SAMPLES_FILE = "samples.jsonl"
HOLDOUT_FILE = "holdout.jsonl"
REFERENCE_FILE = "reference.json"
OTHER_CATEGORY = "__other__"

DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]
FLOATS = {"FP16", "FP32", "FP64"}
INTEGER_RANGE = {
    "UINT8": (0, 2**8 - 1), "UINT16": (0, 2**16 - 1), "UINT32": (0, 2**32 - 1), "UINT64": (0, 2**64 - 1),
    "INT8": (-(2**7), 2**7 - 1), "INT16": (-(2**15), 2**15 - 1), "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
}
FLOAT_LARGEST = {"FP16": 65504.0, "FP32": 3.4028234663852886e38, "FP64": 1.7976931348623157e308}
METRICS = ["mae", "rmse", "mape", "accuracy", "log_loss", "roc_auc", "brier"]
REGRESSION_METRICS = {"mae", "rmse", "mape"}
HIGHER_IS_BETTER = {"accuracy", "roc_auc"}
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def is_numeric(datatype: str) -> bool:
    return datatype in FLOATS or datatype in INTEGER_RANGE


def is_valid_model_name(name: str) -> bool:
    return MODEL_NAME.fullmatch(name) is not None


def rust_float(x: float) -> str:
    """A float as Rust's `Display` writes it: no exponent, no trailing `.0`."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = format(Decimal(repr(float(x))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" and x == 0 else text


class BundleError(Exception):
    """A problem with a bundle: what went wrong and exactly where.

    `str()` gives `path:line: key: message`, as the Rust crate does.
    `kind` is one of `io`, `missing_file`, `syntax`, `invalid`, `conformance`.
    """

    def __init__(self, kind: str, file: Path, message: str, line: int | None = None, key: str | None = None):
        self.kind = kind
        self.file = Path(file)
        self.line = line
        self.key = key
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = str(self.file)
        if self.line is not None:
            where += f":{self.line}"
        if self.key is not None:
            where += f": {self.key}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Warning_:
    file: Path
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        line = f":{self.line}" if self.line is not None else ""
        return f"{self.file}{line}: {self.key}: {self.message}"


@dataclass
class Feature:
    name: str
    datatype: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    #: `[-1, K]`: a classifier's probabilities, K per row (outputs only).
    shape: list[int] | None = None

    def width(self) -> int:
        """Values per row: K for a probabilities output of shape `[-1, K]`, else 1."""
        if self.shape is not None and len(self.shape) == 2 and self.shape[0] == -1 and self.shape[1] >= 0:
            return self.shape[1]
        return 1


@dataclass
class Manifest:
    name: str
    version: int
    task: str
    description: str | None
    producer: dict
    runtime: dict
    inputs: list[Feature]
    outputs: list[Feature]
    contract: dict
    warnings: list[Warning_] = field(default_factory=list)
    #: A classifier's classes, in the order of its probability columns.
    classes: list | None = None

    def classifier(self) -> tuple[list, int, int] | None:
        """(classes, label output's index, probabilities output's index), or
        None for a regression model."""
        if self.task != "classification" or self.classes is None:
            return None
        probabilities = next((i for i, o in enumerate(self.outputs) if o.width() > 1), None)
        label = next((i for i, o in enumerate(self.outputs) if o.width() == 1), None)
        if probabilities is None or label is None:
            return None
        return self.classes, label, probabilities


# ------------------------------------------------------------------ reading


def read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise BundleError("missing_file", path, f"cannot read the file: {e.strerror}") from None
    except IsADirectoryError as e:
        raise BundleError("io", path, f"cannot read the file: {e.strerror}") from None
    except OSError as e:
        raise BundleError("io", path, f"cannot read the file: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError("io", path, "cannot read the file: stream did not contain valid UTF-8") from None


# ------------------------------------------------------- TOML line locating


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")


def _normal_key(key: str) -> str:
    return ".".join(part.strip().strip('"').strip("'") for part in key.split("."))


class Lines:
    """Where a table or key of a TOML document is written (1-based lines)."""

    def __init__(self, text: str):
        self.headers: list[tuple[int, str, int | None]] = []  # (line, name, array index)
        self.keys: list[tuple[int, str, int | None, str]] = []  # (line, table, index, key)
        counts: dict[str, int] = {}
        table, index = "", None
        for number, raw in enumerate(text.split("\n"), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            m = _HEADER.match(line)
            if m:
                table = _normal_key(m.group(2))
                if m.group(1) == "[[":
                    index = counts.get(table, 0)
                    counts[table] = index + 1
                else:
                    index = None
                self.headers.append((number, table, index))
                continue
            if "=" in line:
                key = _normal_key(line.split("=", 1)[0])
                self.keys.append((number, table, index, key))

    def table(self, name: str, index: int | None = None) -> int | None:
        for number, table, i in self.headers:
            if table == name and (index is None or i == index):
                return number
        # A table may also be written as a key of its parent (`parity = { ... }`).
        parent, _, last = name.rpartition(".")
        return self.key(parent, last)

    def key(self, table: str, key: str, index: int | None = None) -> int | None:
        for number, t, i, k in self.keys:
            if t == table and k == key and (index is None or i == index):
                return number
        # Dotted keys and keys written in a parent table.
        for number, t, i, k in self.keys:
            if (f"{t}.{k}" if t else k) == (f"{table}.{key}" if table else key) and (index is None or i == index):
                return number
        return None


# --------------------------------------------------------- serde-like shape


def _found(value: Any) -> str:
    """How serde names a value of the wrong type."""
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{rust_float(value)}`"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    if isinstance(value, list):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    return "a value"


class Shape(Exception):
    """A value that does not have the shape the format expects (serde's errors)."""

    def __init__(self, message: str, path: tuple):
        self.message = message
        self.path = path
        super().__init__(message)


def _want_str(value: Any, path: tuple) -> str:
    if not isinstance(value, str):
        raise Shape(f"invalid type: {_found(value)}, expected a string", path)
    return value


def _want_bool(value: Any, path: tuple) -> bool:
    if not isinstance(value, bool):
        raise Shape(f"invalid type: {_found(value)}, expected a boolean", path)
    return value


def _want_u64(value: Any, path: tuple) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Shape(f"invalid type: {_found(value)}, expected u64", path)
    if not 0 <= value < 2**64:
        raise Shape(f"invalid value: integer `{value}`, expected u64", path)
    return value


def _want_f64(value: Any, path: tuple) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Shape(f"invalid type: {_found(value)}, expected f64", path)
    return float(value)


def _want_table(value: Any, path: tuple, what: str) -> dict:
    if not isinstance(value, dict):
        raise Shape(f"invalid type: {_found(value)}, expected {what}", path)
    return value


def _want_enum(value: Any, variants: list[str], path: tuple) -> str:
    if not isinstance(value, str):
        raise Shape(f"invalid type: {_found(value)}, expected enum", path)
    if value not in variants:
        listed = ", ".join(f"`{v}`" for v in variants)
        expected = f"one of {listed}" if len(variants) > 2 else " or ".join(f"`{v}`" for v in variants)
        raise Shape(f"unknown variant `{value}`, expected {expected}", path)
    return value


def _fields(table: dict, path: tuple, known: list[str], required: list[str], deny_unknown: bool) -> None:
    if deny_unknown:
        for key in table:
            if key not in known:
                listed = ", ".join(f"`{k}`" for k in known)
                raise Shape(f"unknown field `{key}`, expected one of {listed}", path + (key,))
    for key in required:
        if key not in table:
            raise Shape(f"missing field `{key}`", path)


FEATURE_FIELDS = ["name", "datatype", "nullable", "min", "max", "categories", "shape"]


def _feature(value: Any, path: tuple) -> Feature:
    t = _want_table(value, path, "struct Feature")
    _fields(t, path, FEATURE_FIELDS, ["name", "datatype"], True)
    categories = None
    if "categories" in t:
        raw = t["categories"]
        if not isinstance(raw, list):
            raise Shape(f"invalid type: {_found(raw)}, expected a sequence", path + ("categories",))
        categories = [_want_str(c, path + ("categories",)) for c in raw]
    shape = None
    if "shape" in t:
        raw = t["shape"]
        if not isinstance(raw, list):
            raise Shape(f"invalid type: {_found(raw)}, expected a sequence", path + ("shape",))
        shape = [_want_i64(d, path + ("shape",)) for d in raw]
    return Feature(
        name=_want_str(t["name"], path + ("name",)),
        datatype=_want_enum(t["datatype"], DATATYPES, path + ("datatype",)),
        nullable=_want_bool(t["nullable"], path + ("nullable",)) if "nullable" in t else False,
        min=_want_f64(t["min"], path + ("min",)) if "min" in t else None,
        max=_want_f64(t["max"], path + ("max",)) if "max" in t else None,
        categories=categories,
        shape=shape,
    )


def _want_i64(value: Any, path: tuple) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Shape(f"invalid type: {_found(value)}, expected i64", path)
    return value


def _class(value: Any, path: tuple) -> int | str:
    """One of `[model] classes`: an integer or a string (serde's untagged `Class`)."""
    if (isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63) or isinstance(value, str):
        return value
    raise Shape("data did not match any variant of untagged enum Class", path)


def class_text(c: int | str) -> str:
    """A class as messages name it: 1, or 'late'."""
    return str(c) if isinstance(c, int) else f"'{c}'"


CONTRACT_TABLES = {
    "parity": (["abs", "rel"], []),
    "latency": (
        ["p50_ms", "p99_ms", "rate_per_s", "requests", "max_p99_regression", "max_p50_regression", "max_fallback_rate"],
        ["p50_ms", "p99_ms", "rate_per_s", "requests"],
    ),
    "size": (["max_model_bytes", "max_memory_bytes", "max_growth"], []),
    "quality": (["metric", "max", "min", "max_regression"], ["metric"]),
    "fallback": (["metric", "max", "min", "max_regression"], ["metric"]),
}
U64_KEYS = {"requests", "max_model_bytes", "max_memory_bytes"}


def _contract(value: Any, path: tuple) -> dict:
    t = _want_table(value, path, "struct RawContract")
    _fields(t, path, ["parity", "latency", "size", "quality", "fallback", "monotonic", "breaking"], [], True)
    contract: dict = {}
    def budget_of(name: str, known: list[str], required: list[str], sub: Any) -> dict:
        sub = _want_table(sub, path + (name,), "a table")
        _fields(sub, path + (name,), known, required, True)
        budget = {}
        for key, v in sub.items():
            p = path + (name, key)
            if key == "metric":
                budget[key] = _want_enum(v, METRICS, p)
            elif key in U64_KEYS:
                budget[key] = _want_u64(v, p)
            else:
                budget[key] = _want_f64(v, p)
        return budget

    for name, (known, required) in CONTRACT_TABLES.items():
        if name not in t:
            continue
        if name == "quality":
            # One budget or a list of them; always a list here.
            raw = t[name] if isinstance(t[name], list) else [t[name]]
            contract[name] = [budget_of(name, known, required, b) for b in raw]
        else:
            contract[name] = budget_of(name, known, required, t[name])
    monotonic = []
    raw = t.get("monotonic", [])
    if not isinstance(raw, list):
        raise Shape(f"invalid type: {_found(raw)}, expected a sequence", path + ("monotonic",))
    for i, m in enumerate(raw):
        p = path + ("monotonic", i)
        m = _want_table(m, p, "struct Monotonic")
        _fields(m, p, ["input", "direction", "class"], ["input", "direction"], True)
        entry = {"input": _want_str(m["input"], p + ("input",)), "direction": _want_enum(m["direction"], ["increasing", "decreasing"], p + ("direction",))}
        if "class" in m:
            entry["class"] = _class(m["class"], p + ("class",))
        monotonic.append(entry)
    contract["monotonic"] = monotonic
    # The breaking changes against the last release that this release means.
    raw = t.get("breaking", [])
    if not isinstance(raw, list):
        raise Shape(f"invalid type: {_found(raw)}, expected a sequence", path + ("breaking",))
    contract["breaking"] = [_want_str(b, path + ("breaking",)) for b in raw]
    return contract


def _shape(doc: dict) -> Manifest:
    _fields(doc, (), [], ["model", "runtime", "inputs", "outputs"], False)
    model = _want_table(doc["model"], ("model",), "struct ModelInfo")
    _fields(model, ("model",), [], ["name", "version", "task"], False)
    name = _want_str(model["name"], ("model", "name"))
    version = _want_u64(model["version"], ("model", "version"))
    task = _want_enum(model["task"], ["regression", "classification"], ("model", "task"))
    description = _want_str(model["description"], ("model", "description")) if "description" in model else None
    classes = None
    if "classes" in model:
        raw = model["classes"]
        if not isinstance(raw, list):
            raise Shape(f"invalid type: {_found(raw)}, expected a sequence", ("model", "classes"))
        classes = [_class(c, ("model", "classes")) for c in raw]
    producer = _want_table(doc.get("producer", {}), ("producer",), "struct Producer")
    if "python" in producer:
        _want_str(producer["python"], ("producer", "python"))
    packages = _want_table(producer.get("packages", {}), ("producer", "packages"), "a map")
    for k, v in packages.items():
        _want_str(v, ("producer", "packages", k))
    runtime = _want_table(doc["runtime"], ("runtime",), "struct Runtime")
    _fields(runtime, ("runtime",), ["model", "fallback", "deadline_ms"], ["model"], True)
    _want_str(runtime["model"], ("runtime", "model"))
    if "fallback" in runtime:
        _want_str(runtime["fallback"], ("runtime", "fallback"))
    if "deadline_ms" in runtime:
        _want_u64(runtime["deadline_ms"], ("runtime", "deadline_ms"))
    features = {}
    for table in ("inputs", "outputs"):
        raw = doc[table]
        if not isinstance(raw, list):
            raise Shape(f"invalid type: {_found(raw)}, expected a sequence", (table,))
        features[table] = [_feature(f, (table, i)) for i, f in enumerate(raw)]
    contract = _contract(doc["contract"], ("contract",)) if "contract" in doc else None
    return Manifest(
        name, version, task, description, dict(producer), dict(runtime), features["inputs"], features["outputs"],
        contract or {}, classes=classes,
    )


def _line_of(lines: Lines, path: tuple) -> int | None:
    """The line of the deepest part of `path` that can be found."""
    tables = [p for p in path if isinstance(p, str)]
    index = next((p for p in path if isinstance(p, int)), None)
    for depth in range(len(tables), 0, -1):
        parts = tables[:depth]
        if depth == 1:
            found = lines.table(parts[0], index)
        else:
            found = lines.key(".".join(parts[:-1]), parts[-1], index)
            if found is None:
                found = lines.table(".".join(parts), index)
        if found is not None:
            return found
    return None


# ------------------------------------------------------------- the manifest


KNOWN_KEYS = {
    "": ["model", "producer", "runtime", "inputs", "outputs", "contract"],
    "model": ["name", "version", "task", "description", "classes"],
    "producer": ["python", "packages"],
}


def _damerau_levenshtein(a: str, b: str) -> int:
    """The unrestricted Damerau-Levenshtein distance (as strsim computes it)."""
    da: dict[str, int] = {}
    maxdist = len(a) + len(b)
    d = [[0] * (len(b) + 2) for _ in range(len(a) + 2)]
    d[0][0] = maxdist
    for i in range(len(a) + 1):
        d[i + 1][0] = maxdist
        d[i + 1][1] = i
    for j in range(len(b) + 1):
        d[0][j + 1] = maxdist
        d[1][j + 1] = j
    for i in range(1, len(a) + 1):
        db = 0
        for j in range(1, len(b) + 1):
            k = da.get(b[j - 1], 0)
            l = db
            cost = 1
            if a[i - 1] == b[j - 1]:
                cost = 0
                db = j
            d[i + 1][j + 1] = min(
                d[i][j] + cost, d[i + 1][j] + 1, d[i][j + 1] + 1, d[k][l] + (i - k - 1) + 1 + (j - l - 1)
            )
        da[a[i - 1]] = i
    return d[len(a) + 1][len(b) + 1]


def _unknown_keys(doc: dict, lines: Lines, path: Path) -> list[Warning_]:
    warnings = []
    for table, known in KNOWN_KEYS.items():
        keys = doc if not table else doc.get(table)
        if not isinstance(keys, dict):
            continue
        for key in sorted(keys):
            if key in known:
                continue
            dotted = key if not table else f"{table}.{key}"
            close = sorted((_damerau_levenshtein(key, k), k) for k in known)
            hint = f"; did you mean '{close[0][1]}'?" if close and close[0][0] <= 2 else ""
            what = "top-level key" if not table else "key in this table"
            line = lines.table(dotted) if not table else (lines.key(table, key) or lines.table(dotted))
            message = f"unknown key: BUNDLE.md has no such {what}, so nothing reads it{hint}"
            warnings.append(Warning_(path, line, dotted, message))
    return warnings


def parse_manifest(text: str, path: Path) -> Manifest:
    """Parses and validates manifest text; `path` is only used in errors."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        line = None
        m = re.search(r"\s*\(at line (\d+), column \d+\)$", message)
        if m:
            line = int(m.group(1))
            message = message[: m.start()]
        elif "(at end of document)" in message:
            line = text.count("\n") + 1
            message = message.replace(" (at end of document)", "")
        raise BundleError("syntax", path, message, line=line) from None
    lines = Lines(text)
    try:
        manifest = _shape(doc)
    except Shape as e:
        raise BundleError("syntax", path, e.message, line=_line_of(lines, e.path)) from None
    _validate(manifest, lines, path)
    manifest.warnings = _unknown_keys(doc, lines, path)
    return manifest


def load_manifest(path: Path) -> Manifest:
    return parse_manifest(read_text(path), path)


def _validate(m: Manifest, lines: Lines, path: Path) -> None:
    def error(line: int | None, key: str, message: str) -> BundleError:
        return BundleError("invalid", path, message, line=line, key=key)

    model_line = lines.table("model")
    if not is_valid_model_name(m.name):
        raise error(
            model_line,
            "model.name",
            f"'{m.name}' is not a valid model name (lowercase letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 64 characters)",
        )
    if m.version == 0:
        raise error(model_line, "model.version", "versions start at 1")
    runtime_line = lines.table("runtime")
    for key in ("model", "fallback"):
        file = m.runtime.get(key)
        if file is not None and not is_inside_bundle(file):
            raise error(runtime_line, f"runtime.{key}", f"'{file}' must be a path inside the bundle, such as \"model.onnx\"")
    if m.runtime.get("deadline_ms") == 0:
        raise error(runtime_line, "runtime.deadline_ms", "must be at least 1 ms")
    for table, features in (("inputs", m.inputs), ("outputs", m.outputs)):
        if not features:
            raise BundleError("invalid", path, f"the manifest declares no [[{table}]]", key=table)
        seen = set()
        for i, f in enumerate(features):
            line = lines.table(table, i)

            def err(k: str, message: str) -> BundleError:
                return error(line, f"{table}[{i}].{k} ('{f.name}')", message)

            if not f.name:
                raise err("name", "must not be empty")
            if f.name in seen:
                raise err("name", f"'{f.name}' is declared twice")
            seen.add(f.name)
            for k, bound in (("min", f.min), ("max", f.max)):
                if bound is not None and not is_numeric(f.datatype):
                    raise err(k, f"bounds apply to numeric datatypes, not {f.datatype}")
                if bound is not None and not math.isfinite(bound):
                    raise err(k, f"{rust_float(bound)} is not a finite bound")
            if f.min is not None and f.max is not None and f.min > f.max:
                raise err("max", f"{rust_float(f.max)} is below min {rust_float(f.min)}")
            if f.nullable and f.datatype not in FLOATS:
                raise err(
                    "nullable",
                    "a null reaches the model as NaN, so only FP16, FP32 and FP64 can be nullable, "
                    f"not {f.datatype}",
                )
            if f.categories is not None:
                if f.datatype != "BYTES":
                    raise err("categories", f"categories apply to BYTES, not {f.datatype}")
                if not f.categories:
                    raise err("categories", "must list at least one category")
                distinct = set()
                for c in f.categories:
                    if c in distinct:
                        raise err("categories", f"'{c}' is listed twice")
                    distinct.add(c)
    for i, f in enumerate(m.inputs):
        if f.shape is not None:
            raise error(
                lines.table("inputs", i), f"inputs.{f.name}.shape",
                "an input is one value per row; shape applies to a classifier's probabilities",
            )
    _validate_task(m, lines, error)
    _validate_contract(m, lines, error)


def _validate_task(m: Manifest, lines: Lines, error) -> None:
    """A classifier declares its classes and its two outputs; a regression model neither."""
    model_line = lines.table("model")
    shaped = [i for i, o in enumerate(m.outputs) if o.shape is not None]
    if m.classes is None:
        if m.task == "classification":
            raise error(
                model_line, "model.classes",
                'a classification model lists its classes, in the order of its probability columns: classes = ["on_time", "late"]',
            )
        if shaped:
            o = m.outputs[shaped[0]]
            raise error(
                lines.table("outputs", shaped[0]), f"outputs.{o.name}.shape",
                'shape applies to a classifier\'s probabilities (task = "classification")',
            )
        return
    if m.task != "classification":
        raise error(model_line, "model.classes", 'classes apply to task = "classification"')
    classes = m.classes
    if len(classes) < 2:
        raise error(model_line, "model.classes", f"a classifier has at least two classes, not {len(classes)}")
    seen = []
    for c in classes:
        if any(type(c) is type(d) and c == d for d in seen):
            raise error(model_line, "model.classes", f"{class_text(c)} is listed twice")
        seen.append(c)
    kinds = {isinstance(c, int) for c in classes}
    if len(kinds) > 1:
        raise error(model_line, "model.classes", "classes are all integers or all strings, not both")
    datatype = "INT64" if isinstance(classes[0], int) else "BYTES"
    k = len(classes)
    if len(m.outputs) != 2:
        names = ", ".join(o.name for o in m.outputs)
        raise error(
            model_line, "outputs",
            f"a classifier has two outputs, the label and the probabilities, not {len(m.outputs)} ({names})",
        )
    if len(shaped) != 1:
        raise error(
            lines.table("outputs", 1 if not shaped else 0), "outputs",
            f"exactly one output is the probabilities, with shape = [-1, {k}]; {len(shaped)} of the two have a shape",
        )
    p_index = shaped[0]
    p = m.outputs[p_index]
    p_line = lines.table("outputs", p_index)
    if p.shape != [-1, k]:
        shown = "[" + ", ".join(str(d) for d in p.shape) + "]"
        raise error(p_line, f"outputs.{p.name}.shape", f"{shown} is not [-1, {k}]: one probability per class, for any number of rows")
    if p.datatype != "FP32":
        raise error(p_line, f"outputs.{p.name}.datatype", f"the probabilities are FP32, not {p.datatype}")
    label = m.outputs[1 - p_index]
    if label.datatype != datatype:
        kind = "integers" if datatype == "INT64" else "strings"
        raise error(
            lines.table("outputs", 1 - p_index), f"outputs.{label.name}.datatype",
            f"the label carries the classes, which are {kind}: {datatype}, not {label.datatype}",
        )


def _non_negative(x: float) -> bool:
    return math.isfinite(x) and x >= 0.0


def _validate_contract(m: Manifest, lines: Lines, error) -> None:
    c = m.contract
    if "parity" in c:
        p = c["parity"]
        if not (_non_negative(p.get("abs", 0.0)) and _non_negative(p.get("rel", 0.0))):
            raise error(lines.table("contract.parity"), "contract.parity", "abs and rel must be finite and not negative")
    if "latency" in c:
        b = c["latency"]
        line = lines.table("contract.latency")

        def positive(x: float) -> bool:
            return math.isfinite(x) and x > 0.0

        if not (positive(b["p50_ms"]) and positive(b["p99_ms"]) and positive(b["rate_per_s"]) and b["requests"] > 0):
            raise error(line, "contract.latency", "p50_ms, p99_ms, rate_per_s and requests must be positive")
        if b["p50_ms"] > b["p99_ms"]:
            raise error(line, "contract.latency.p99_ms", f"{rust_float(b['p99_ms'])} is below p50_ms {rust_float(b['p50_ms'])}")
        for key in ("max_p99_regression", "max_p50_regression"):
            if key in b and not _non_negative(b[key]):
                raise error(line, f"contract.latency.{key}", "must not be negative")
        if "max_fallback_rate" in b and not (_non_negative(b["max_fallback_rate"]) and b["max_fallback_rate"] <= 1.0):
            raise error(line, "contract.latency.max_fallback_rate", "must be a share between 0 and 1")
    if "size" in c:
        b = c["size"]
        line = lines.table("contract.size")
        if not any(k in b for k in ("max_model_bytes", "max_memory_bytes", "max_growth")):
            raise error(line, "contract.size", "give max_model_bytes, max_memory_bytes or max_growth")
        if "max_growth" in b and not _non_negative(b["max_growth"]):
            raise error(line, "contract.size.max_growth", "must not be negative")
    budgets = [(f"contract.quality[{i}]" if len(c["quality"]) > 1 else "contract.quality", b) for i, b in enumerate(c.get("quality", []))]
    if "fallback" in c:
        budgets.append(("contract.fallback", c["fallback"]))
    for key, b in budgets:
        line = lines.table(key.split("[")[0])
        metric = b["metric"]
        fits = (metric in REGRESSION_METRICS) == (m.task == "regression")
        if not fits:
            raise error(line, f"{key}.metric", f"'{metric}' does not apply to a {m.task} model")
        higher = metric in HIGHER_IS_BETTER
        wanted, other = ("min", "max") if higher else ("max", "min")
        if other in b:
            raise error(line, f"{key}.{other}", f"'{metric}' is bounded by {wanted}, not {other}")
        if "max_regression" in b and not _non_negative(b["max_regression"]):
            raise error(line, f"{key}.max_regression", "must not be negative")
    for i, mono in enumerate(c.get("monotonic", [])):
        name = mono["input"]
        feature = next((f for f in m.inputs if f.name == name), None)
        if feature is None:
            problem = f"'{name}' is not an input of the model"
        elif not is_numeric(feature.datatype):
            problem = f"'{name}' is {feature.datatype}, not numeric"
        else:
            klass = mono.get("class")
            if klass is None and m.classes is None:
                continue
            if klass is not None and m.classes is not None and any(type(klass) is type(c) and klass == c for c in m.classes):
                continue
            if klass is not None and m.classes is not None:
                problem = f"{class_text(klass)} is not a class of the model"
            elif klass is not None:
                problem = "a class applies to a classifier's constraint"
            else:
                problem = "a classifier's constraint names the class whose probability it holds: class = ..."
            raise error(lines.table("contract.monotonic", i), f"contract.monotonic[{i}].class", problem)
        raise error(lines.table("contract.monotonic", i), f"contract.monotonic[{i}].input", problem)


def is_inside_bundle(file: str) -> bool:
    """Whether `file` is a relative path that stays inside the bundle folder."""
    if not file or file.startswith("/"):
        return False
    parts = file.split("/")
    for n, part in enumerate(parts):
        if part == "" or (part == "." and n > 0):
            continue
        if part in (".", ".."):
            return False
    return True


# ---------------------------------------------------------------- the rows


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _json_number(value: int | float) -> str:
    if isinstance(value, float):
        text = repr(value)
        return text.replace("e+", "e")
    return str(value)


def read_value(f: Feature, value: Any) -> Any:
    """Reads a JSON value as the feature's datatype; raises ValueError with the reason."""
    width = f.width()
    if width > 1:
        if not isinstance(value, list):
            raise ValueError(f"is not a list of {width} values (shape [-1, {width}])")
        if len(value) != width:
            raise ValueError(f"holds {len(value)} values, not {width} (shape [-1, {width}])")
        one = Feature(f.name, f.datatype, False, f.min, f.max, f.categories)
        items = []
        for k, item in enumerate(value):
            try:
                read = read_value(one, item)
            except ValueError as e:
                raise ValueError(f"[{k}] {e}") from None
            items.append(float(read) if read is not None and not isinstance(read, str) else math.nan)
        return items
    dt = f.datatype
    if value is None:
        if f.nullable:
            return None
        raise ValueError("is null but not nullable")
    if isinstance(value, bool):
        if dt == "BOOL":
            return value
    elif isinstance(value, str):
        if dt == "BYTES":
            if "\0" in value:
                raise ValueError("holds a NUL character, which a BYTES value cannot carry")
            return value
    elif isinstance(value, (int, float)):
        if dt in FLOATS:
            if abs(float(value)) > FLOAT_LARGEST[dt]:
                raise ValueError(f"is {_json_number(value)}, beyond the range of finite {dt} values")
            return float(value)
        if dt in INTEGER_RANGE:
            if isinstance(value, float) or not -(2**63) <= value < 2**64:
                raise ValueError(f"is {_json_number(value)}, not an integer ({dt})")
            lo, hi = INTEGER_RANGE[dt]
            if float(value) < float(lo) or float(value) > float(hi):
                raise ValueError(f"is {value}, which does not fit in {dt}")
            return value
    raise ValueError(f"is {_json_kind(value)}, but the datatype is {dt}")


def check_domain(f: Feature, value: Any) -> None:
    """Checks a read value against the feature's bounds and categories."""
    if isinstance(value, list):
        for k, x in enumerate(value):
            try:
                check_domain(Feature(f.name, f.datatype, False, f.min, f.max, f.categories), x)
            except ValueError as e:
                raise ValueError(f"[{k}] {e}") from None
        return
    if f.categories is not None and isinstance(value, str) and value not in f.categories:
        listed = "[" + ", ".join(json.dumps(c, ensure_ascii=False) for c in f.categories) + "]"
        raise ValueError(f"'{value}' is not one of the categories {listed}")
    if value is None or isinstance(value, str):
        return
    x = float(value)
    if f.min is not None and x < f.min:
        raise ValueError(f"{rust_float(x)} is below min {rust_float(f.min)}")
    if f.max is not None and x > f.max:
        raise ValueError(f"{rust_float(x)} is above max {rust_float(f.max)}")


def read_row(values: dict, features: list[Feature], check: bool) -> list:
    """A map of name to value in feature order; raises KeyError-like (name, reason)."""
    names = [f.name for f in features]
    for key in sorted(values):
        if key not in names:
            raise _RowError(key, f"'{key}' is not declared in the manifest (declared: {', '.join(names)})")
    row = []
    for f in features:
        if f.name not in values:
            raise _RowError(f.name, f"'{f.name}' is missing")
        try:
            value = read_value(f, values[f.name])
        except ValueError as e:
            raise _RowError(f.name, f"'{f.name}' {e}") from None
        if check:
            try:
                check_domain(f, value)
            except ValueError as e:
                raise _RowError(f.name, f"'{f.name}' = {e}") from None
        row.append(value)
    return row


class _RowError(Exception):
    def __init__(self, name: str, message: str):
        self.name = name
        self.message = message


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(text: str) -> Any:
    def parse_float(s: str) -> float:
        x = float(s)
        if math.isinf(x):
            raise ValueError("number out of range")
        return x

    return json.loads(text, parse_constant=_reject_constant, parse_float=parse_float)


def _record_shape(raw: Any) -> None:
    if not isinstance(raw, dict):
        raise ValueError(f"invalid type: {_found_json(raw)}, expected struct RawRecord")
    if "id" in raw and raw["id"] is not None and not isinstance(raw["id"], str):
        raise ValueError(f"invalid type: {_found_json(raw['id'])}, expected a string")
    if "inputs" not in raw:
        raise ValueError("missing field `inputs`")
    for key in ("inputs", "outputs", "fallback_outputs", "target"):
        if key in raw and not isinstance(raw[key], dict) and not (key != "inputs" and raw[key] is None):
            raise ValueError(f"invalid type: {_found_json(raw[key])}, expected a map")


def _found_json(value: Any) -> str:
    if value is None:
        return "null"
    return _found(value)


def parse_records(text: str, path: Path, manifest: Manifest, samples: bool) -> list[dict]:
    """Reads JSON Lines records and checks each against the manifest.

    `samples` is True for samples.jsonl (every row needs outputs) and False
    for holdout.jsonl (every row needs a target).
    """
    records = []
    ids = set()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for index, line_text in enumerate(lines):
        line = index + 1
        if line_text.endswith("\r"):
            line_text = line_text[:-1]
        if not line_text.strip():
            continue
        try:
            raw = _parse_json(line_text)
            _record_shape(raw)
        except json.JSONDecodeError as e:
            raise BundleError("syntax", path, f"not a JSON record: {e.msg} (column {e.colno})", line=line) from None
        except ValueError as e:
            raise BundleError("syntax", path, f"not a JSON record: {e}", line=line) from None
        rid = raw.get("id")
        rid = rid if rid is not None else f"line {line}"
        if rid in ids:
            raise BundleError("conformance", path, f"'{rid}' is used by an earlier row", line=line, key="id")
        ids.add(rid)
        record = {"line": line, "id": rid}
        classifier = manifest.classifier()
        # A classifier's target is its label alone; the probabilities' slot is null.
        targets = manifest.outputs if classifier is None else [manifest.outputs[classifier[1]]]
        for key, features, domain in (
            ("inputs", manifest.inputs, True),
            ("outputs", manifest.outputs, True),
            ("fallback_outputs", manifest.outputs, True),
            ("target", targets, False),
        ):
            if raw.get(key) is None:
                record[key] = None
                continue
            try:
                record[key] = read_row(raw[key], features, domain)
            except _RowError as e:
                raise BundleError("conformance", path, f"row '{rid}': {e.message}", line=line, key=f"{key}.{e.name}") from None
        if classifier is not None:
            classes, label, _ = classifier
            if record["target"] is not None:
                row = [None] * len(manifest.outputs)
                row[label] = record["target"][0]
                record["target"] = row
            for key in ("outputs", "fallback_outputs", "target"):
                if record[key] is None:
                    continue
                value = record[key][label]
                if not any(type(value) is type(c) and value == c for c in classes):
                    name = manifest.outputs[label].name
                    listed = ", ".join(class_text(c) for c in classes)
                    raise BundleError(
                        "conformance", path, f"row '{rid}': '{name}' = {json.dumps(value)} is not one of the classes [{listed}]",
                        line=line, key=f"{key}.{name}",
                    )
        if samples and record["outputs"] is None:
            raise BundleError(
                "conformance",
                path,
                f"row '{rid}' has no outputs; a verification sample needs the training process's prediction",
                line=line,
                key="outputs",
            )
        if not samples and record["target"] is None:
            raise BundleError(
                "conformance", path, f"row '{rid}' has no target; a hold-out row needs the true value", line=line, key="target"
            )
        records.append(record)
    if not records:
        raise BundleError("conformance", path, "the file has no rows")
    return records


# ------------------------------------------------------ JSON files' shapes


def _json_syntax(path: Path, text: str) -> Any:
    try:
        return _parse_json(text)
    except json.JSONDecodeError as e:
        raise BundleError("syntax", path, f"{e.msg} at line {e.lineno} column {e.colno}", line=e.lineno) from None
    except ValueError as e:
        raise BundleError("syntax", path, str(e)) from None


def _json_shape(path: Path, message: str) -> BundleError:
    return BundleError("syntax", path, message)


def _want_json_f64(path: Path, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _json_shape(path, f"invalid type: {_found_json(value)}, expected f64")
    return float(value)


def _want_json_u64(path: Path, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _json_shape(path, f"invalid type: {_found_json(value)}, expected u64")
    if isinstance(value, float) or value < 0:
        raise _json_shape(path, f"invalid type: {_found_json(value)}, expected u64")
    return value


def _want_json_object(path: Path, value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise _json_shape(path, f"invalid type: {_found_json(value)}, expected {what}")
    return value


def _want_json_fields(path: Path, table: dict, required: list[str]) -> None:
    for key in required:
        if key not in table:
            raise _json_shape(path, f"missing field `{key}`")


# --------------------------------------------------------------- reference


SHARE_SUM_TOLERANCE = 1e-3


def parse_reference(text: str, path: Path, manifest: Manifest) -> dict:
    doc = _json_syntax(path, text)
    doc = _want_json_object(path, doc, "struct Reference")
    _want_json_fields(path, doc, ["rows", "inputs"])
    _want_json_u64(path, doc["rows"])
    tables = {"inputs": _want_json_object(path, doc["inputs"], "a map"), "outputs": _want_json_object(path, doc.get("outputs", {}), "a map")}
    for table in ("inputs", "outputs"):
        for name in sorted(tables[table]):
            s = _want_json_object(path, tables[table][name], "internally tagged enum Stats")
            if "kind" not in s:
                raise _json_shape(path, "missing field `kind`")
            kind = s["kind"]
            if kind not in ("numeric", "categorical"):
                raise _json_shape(path, f"unknown variant `{kind}`, expected `numeric` or `categorical`")
            if kind == "numeric":
                _want_json_fields(path, s, ["count", "null_fraction", "mean", "std", "min", "max"])
                _want_json_u64(path, s["count"])
                for k in ("null_fraction", "mean", "std", "min", "max"):
                    _want_json_f64(path, s[k])
                if s.get("bins") is not None:
                    bins = _want_json_object(path, s["bins"], "struct Bins")
                    _want_json_fields(path, bins, ["edges", "frequencies"])
                    for k in ("edges", "frequencies"):
                        if not isinstance(bins[k], list):
                            raise _json_shape(path, f"invalid type: {_found_json(bins[k])}, expected a sequence")
                        for x in bins[k]:
                            _want_json_f64(path, x)
            else:
                _want_json_fields(path, s, ["count", "null_fraction", "categories"])
                _want_json_u64(path, s["count"])
                _want_json_f64(path, s["null_fraction"])
                cats = _want_json_object(path, s["categories"], "a map")
                for x in cats.values():
                    _want_json_f64(path, x)
    features = {"inputs": manifest.inputs, "outputs": manifest.outputs}
    for table in ("inputs", "outputs"):
        for name in sorted(tables[table]):
            s = tables[table][name]

            def invalid(k: str, message: str) -> BundleError:
                return BundleError("invalid", path, message, key=f"{table}.{name}.{k}")

            if not any(f.name == name for f in features[table]):
                raise BundleError("invalid", path, f"'{name}' is not one of the manifest's {table}", key=f"{table}.{name}")
            if s["kind"] == "numeric":
                bins = s.get("bins")
                if bins is not None:
                    edges, freqs = bins["edges"], bins["frequencies"]
                    if len(edges) != len(freqs) + 1:
                        raise invalid("bins", f"{len(edges)} edges need {max(len(edges) - 1, 0)} frequencies, not {len(freqs)}")
                    if any(not a < b for a, b in zip(edges, edges[1:])):
                        raise invalid("bins.edges", "must be strictly increasing")
                shares = [float(x) for x in bins["frequencies"]] if bins is not None else None
                share_key = "bins.frequencies"
            else:
                shares = [float(s["categories"][k]) for k in sorted(s["categories"])]
                share_key = "categories"
            nf = float(s["null_fraction"])
            if not 0.0 <= nf <= 1.0:
                raise invalid("null_fraction", f"{rust_float(nf)} is not a share between 0 and 1")
            if shares:
                total = 0.0
                for x in shares:
                    total += x
                if any(not 0.0 <= x <= 1.0 for x in shares) or abs(total - 1.0) > SHARE_SUM_TOLERANCE:
                    raise invalid(share_key, f"shares must lie in [0, 1] and sum to 1 (they sum to {rust_float(total)})")
    return doc


# ---------------------------------------------------------------- fallback


FALLBACK_KINDS = ("linear", "logistic", "softmax")


def parse_fallback(text: str, path: Path, manifest: Manifest) -> dict:
    doc = _json_syntax(path, text)
    doc = _want_json_object(path, doc, "struct RawKind")
    _want_json_fields(path, doc, ["kind"])
    if not isinstance(doc["kind"], str):
        raise _json_shape(path, f"invalid type: {_found_json(doc['kind'])}, expected a string")
    kind = doc["kind"]
    if kind not in FALLBACK_KINDS:
        raise BundleError(
            "invalid", path,
            f"fallback kind '{kind}' is not supported (this version supports 'linear', 'logistic' and 'softmax')",
            key="kind",
        )
    classifier = manifest.classifier()
    wanted = None
    if classifier is None and kind != "linear":
        wanted = "a regression model's fallback is 'linear'"
    elif classifier is not None and kind == "linear":
        wanted = (
            "a classifier's fallback is 'logistic' (two classes) or 'softmax', not 'linear'; "
            f"this one has {len(classifier[0])} classes"
        )
    elif classifier is not None and kind == "logistic" and len(classifier[0]) != 2:
        wanted = f"'logistic' is for two classes; this classifier has {len(classifier[0])}: use 'softmax'"
    if wanted is not None:
        raise BundleError("invalid", path, wanted, key="kind")
    per_class = kind == "softmax"
    _want_json_fields(path, doc, ["output"] + (["intercept"] if per_class else []))
    if not isinstance(doc["output"], str):
        raise _json_shape(path, f"invalid type: {_found_json(doc['output'])}, expected a string")

    def numbers(value: Any) -> list[float]:
        if not per_class:
            return [_want_json_f64(path, value)]
        if not isinstance(value, list):
            raise _json_shape(path, f"invalid type: {_found_json(value)}, expected a sequence")
        return [_want_json_f64(path, x) for x in value]

    if "intercept" in doc:
        numbers(doc["intercept"])
    numeric = _want_json_object(path, doc.get("numeric", {}), "a map")
    for name, term in numeric.items():
        term = _want_json_object(path, term, "struct RawNumeric")
        for key in term:
            if key not in ("impute", "mean", "scale", "coef"):
                raise _json_shape(path, f"unknown field `{key}`, expected one of `impute`, `mean`, `scale`, `coef`")
        _want_json_fields(path, term, ["impute", "mean", "scale", "coef"])
        for key in ("impute", "mean", "scale"):
            _want_json_f64(path, term[key])
        numbers(term["coef"])
    categorical = _want_json_object(path, doc.get("categorical", {}), "a map")
    for name, weights in categorical.items():
        weights = _want_json_object(path, weights, "a map")
        for w in weights.values():
            numbers(w)
    clip = doc.get("clip") if not per_class else None
    if clip is not None:
        if not isinstance(clip, list):
            raise _json_shape(path, f"invalid type: {_found_json(clip)}, expected an array of length 2")
        if len(clip) != 2:
            raise _json_shape(path, f"invalid length {len(clip)}, expected an array of length 2")
        for x in clip:
            _want_json_f64(path, x)

    def invalid(key: str, message: str) -> BundleError:
        return BundleError("invalid", path, message, key=key)

    def probabilities() -> None:
        if classifier is not None and manifest.outputs[classifier[2]].name != doc["output"]:
            raise invalid(
                "output",
                f"a classifier's fallback predicts its probabilities, '{manifest.outputs[classifier[2]].name}', not '{doc['output']}'",
            )

    if per_class:
        probabilities()
        k = len(classifier[0])

        def count(key: str, values: list) -> None:
            if len(values) != k:
                raise invalid(key, f"holds {len(values)} numbers, not one per class ({k})")

        count("intercept", doc["intercept"])
        for name in sorted(numeric):
            count(f"numeric.{name}.coef", numeric[name]["coef"])
        for name in sorted(categorical):
            for category in sorted(categorical[name]):
                count(f"categorical.{name}.{category}", categorical[name][category])
    if not any(f.name == doc["output"] for f in manifest.outputs):
        raise invalid("output", f"'{doc['output']}' is not an output of model '{manifest.name}'")
    inputs = {f.name: f for f in manifest.inputs}
    for name in sorted(numeric):
        feature = inputs.get(name)
        if feature is None:
            raise invalid(f"numeric.{name}", f"'{name}' is not an input of model '{manifest.name}'")
        if not is_numeric(feature.datatype) and feature.datatype != "BOOL":
            raise invalid(f"numeric.{name}", f"'{name}' is {feature.datatype}, so it cannot be a numeric term")
        if float(numeric[name]["scale"]) == 0.0:
            raise invalid(f"numeric.{name}.scale", "must not be zero")
    for name in sorted(categorical):
        feature = inputs.get(name)
        if feature is None:
            raise invalid(f"categorical.{name}", f"'{name}' is not an input of model '{manifest.name}'")
        if feature.datatype in FLOATS:
            raise invalid(f"categorical.{name}", f"'{name}' is {feature.datatype}, so it cannot be a categorical term")
    if clip is not None and not float(clip[0]) <= float(clip[1]):
        raise invalid("clip", f"[{rust_float(float(clip[0]))}, {rust_float(float(clip[1]))}] is not a finite range with low <= high")
    if kind == "logistic":
        probabilities()
    return doc


def _linear(fallback: dict, row: dict, k: int | None) -> float:
    """The linear form of a fallback on one row given by input name; `k`
    picks the class's numbers of a softmax fallback."""

    def pick(x):
        return x if k is None else x[k]

    y = float(pick(fallback.get("intercept", 0.0 if k is None else [0.0] * (k + 1))))
    for name in sorted(fallback.get("numeric", {})):
        t = fallback["numeric"][name]
        x = row.get(name)
        if x is None or isinstance(x, str) or (isinstance(x, float) and math.isnan(x)):
            x = t["impute"]
        y += pick(t["coef"]) * (float(x) - t["mean"]) / t["scale"]
    for name in sorted(fallback.get("categorical", {})):
        weights = fallback["categorical"][name]
        x = row.get(name)
        key = x if isinstance(x, str) else (str(x) if isinstance(x, int) and not isinstance(x, bool) else None)
        if key is not None and key in weights and key != OTHER_CATEGORY:
            y += pick(weights[key])
        elif OTHER_CATEGORY in weights:
            y += pick(weights[OTHER_CATEGORY])
    return y


def evaluate_fallback(fallback: dict, manifest_inputs: list[Feature], row: dict) -> float | list[float]:
    """The fallback's prediction for one row given by input name, as
    Preflight computes it: a value for a linear fallback, a classifier's
    probabilities in class order for a logistic or softmax one."""
    kind = fallback.get("kind", "linear")
    if kind == "logistic":
        p = 1.0 / (1.0 + math.exp(-_linear(fallback, row, None)))
        return [1.0 - p, p]
    if kind == "softmax":
        scores = [_linear(fallback, row, k) for k in range(len(fallback["intercept"]))]
        top = max(scores)
        e = [math.exp(z - top) for z in scores]
        return [x / sum(e) for x in e]
    y = _linear(fallback, row, None)
    clip = fallback.get("clip")
    if clip is not None:
        y = min(max(y, clip[0]), clip[1])
    return y


# ------------------------------------------------------------------ bundle


@dataclass
class CheckedBundle:
    dir: Path
    manifest: Manifest
    fallback: dict | None
    samples: list[dict] | None
    holdout: list[dict] | None
    reference: dict | None

    @property
    def warnings(self) -> list[Warning_]:
        return self.manifest.warnings


def check_bundle(directory: str | Path) -> CheckedBundle:
    """Checks one bundle folder (`<repository>/<model>/<version>/`) as Preflight opens it.

    Raises BundleError on the first problem: the manifest, the folder layout,
    the model file, the fallback, then samples, hold-out and reference.
    """
    d = Path(directory)
    manifest_path = d / MANIFEST_FILE
    manifest = load_manifest(manifest_path)
    version_folder = d.resolve().name if str(d) in ("", ".") else d.name
    model_folder = (d.resolve() if str(d) in ("", ".") else d).parent.name
    if version_folder != str(manifest.version):
        raise BundleError(
            "invalid",
            manifest_path,
            f"the manifest says version {manifest.version} but the bundle folder is '{version_folder}'",
            key="model.version",
        )
    if model_folder != manifest.name:
        raise BundleError(
            "invalid",
            manifest_path,
            f"the manifest says model '{manifest.name}' but the model folder is '{model_folder}'",
            key="model.name",
        )

    def named(key: str, file: str) -> Path:
        if not (d / file).is_file():
            raise BundleError("missing_file", manifest_path, f"'{file}' is not in the bundle", key=key)
        return d / file

    named("runtime.model", manifest.runtime["model"])
    fallback = None
    if manifest.runtime.get("fallback") is not None:
        path = named("runtime.fallback", manifest.runtime["fallback"])
        fallback = parse_fallback(read_text(path), path, manifest)

    def optional(file: str, parse):
        path = d / file
        return parse(read_text(path), path) if path.exists() else None

    samples = optional(SAMPLES_FILE, lambda t, p: parse_records(t, p, manifest, samples=True))
    holdout = optional(HOLDOUT_FILE, lambda t, p: parse_records(t, p, manifest, samples=False))
    reference = optional(REFERENCE_FILE, lambda t, p: parse_reference(t, p, manifest))
    return CheckedBundle(d, manifest, fallback, samples, holdout, reference)


def bundle_dirs(directory: str | Path) -> list[Path]:
    """The bundles under `directory`: itself when it holds manifest.toml, its
    version folders when it is one model's folder, else every
    `<model>/<version>/` folder of a model repository."""
    d = Path(directory)
    if (d / MANIFEST_FILE).is_file():
        return [d]
    versions = sorted((p for p in d.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if versions:
        return versions  # one model's folder
    found = []
    for model in sorted(p for p in d.iterdir() if p.is_dir()):
        for version in sorted((p for p in model.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
            found.append(version)
    return found
