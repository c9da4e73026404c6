"""Writes the error fixtures in tests/errors/: one broken bundle per case.

Usage: python tests/make_error_cases.py

Each case is a model folder, tests/errors/<case>/, holding the broken bundle
in 1/ and expect.toml beside it:

    file = "samples.jsonl"   # the file the error names
    line = 2                 # optional: the line it names
    contains = "..."         # a phrase of the message, the same in Python and Rust

Every case starts from one tiny valid bundle (a five-tree model on a few
rows) and breaks one thing. The Python checker (tests/test_errors.py) and the
Rust crate's test read the same folders.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from conftest import orders  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import GradientBoostingRegressor  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder  # noqa: E402

from preflight_bundle import write_bundle  # noqa: E402

ERRORS = HERE / "errors"


def base(tmp: Path) -> Path:
    x, y = orders(60, 7)
    xh, yh = orders(4, 8)
    pipe = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        ("prep", SimpleImputer(strategy="median"), ["prep_time_min"]),
                        ("num", "passthrough", ["distance_km", "hour"]),
                        ("vehicle", OneHotEncoder(handle_unknown="ignore"), ["vehicle"]),
                    ]
                ),
            ),
            ("model", GradientBoostingRegressor(n_estimators=5, max_depth=2, random_state=0)),
        ]
    ).fit(x, y)
    out = tmp / "tiny" / "1"
    write_bundle(
        pipe,
        out,
        train=(x, y),
        holdout=(xh, yh),
        samples=3,
        description="Error fixture",
        inputs={"hour": {"min": 0, "max": 23}},
        output_range=(0.0, 300.0),
        quiet=True,
    )
    return out


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    if old not in text:
        raise SystemExit(f"{path}: '{old}' not found")
    path.write_text(text.replace(old, new, count))


def edit_line(path: Path, line: int, change) -> None:
    lines = path.read_text().split("\n")
    lines[line - 1] = change(lines[line - 1])
    path.write_text("\n".join(lines))


def json_line(path: Path, line: int, change) -> None:
    def apply(text: str) -> str:
        row = json.loads(text)
        change(row)
        return json.dumps(row, separators=(",", ":"))

    edit_line(path, line, apply)


def line_of(path: Path, pattern: str, nth: int = 1) -> int:
    found = [n for n, text in enumerate(path.read_text().split("\n"), start=1) if re.search(pattern, text)]
    return found[nth - 1]


def case(name: str, src: Path, file: str, contains: str, change, line=None) -> None:
    folder = ERRORS / name
    bundle = folder / "1"
    shutil.copytree(src, bundle)
    edit(bundle / "manifest.toml", 'name = "tiny"', f'name = "{name}"')
    found_line = change(bundle)
    line = line if line is not None else found_line
    expect = [f"file = {json.dumps(file)}"]
    if line is not None:
        expect.append(f"line = {line}")
    expect.append(f"contains = {json.dumps(contains)}")
    (folder / "expect.toml").write_text("\n".join(expect) + "\n")


def main() -> None:
    import tempfile

    if ERRORS.exists():
        shutil.rmtree(ERRORS)
    ERRORS.mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        src = base(Path(tmp))

        def manifest_missing(b):
            (b / "manifest.toml").unlink()

        case("manifest-missing", src, "manifest.toml", "cannot read the file", manifest_missing)

        def bad_toml(b):
            m = b / "manifest.toml"
            edit(m, "[runtime]", "[runtime")
            return line_of(m, r"^\[runtime")

        case("manifest-bad-toml", src, "manifest.toml", "table", bad_toml)

        def unknown_datatype(b):
            m = b / "manifest.toml"
            n = line_of(m, '^datatype = "INT64"')
            edit(m, 'datatype = "INT64"', 'datatype = "INT46"')
            return n

        case("unknown-datatype", src, "manifest.toml", "unknown variant `INT46`", unknown_datatype)

        def unknown_runtime_key(b):
            m = b / "manifest.toml"
            edit(m, "deadline_ms = 25", "deadline = 25")
            return line_of(m, "^deadline = ")

        case("runtime-unknown-key", src, "manifest.toml", "unknown field `deadline`", unknown_runtime_key)

        def missing_model(b):
            (b / "model.onnx").unlink()

        case("model-file-missing", src, "manifest.toml", "'model.onnx' is not in the bundle", missing_model)

        def folder_mismatch(b):
            edit(b / "manifest.toml", 'name = "folder-mismatch"', 'name = "another-model"')

        case("folder-mismatch", src, "manifest.toml", "the manifest says model 'another-model' but the model folder is 'folder-mismatch'", folder_mismatch)

        def bounds_inverted(b):
            edit(b / "manifest.toml", "min = 0\nmax = 23", "min = 23\nmax = 0")
            # Rust reports a rule broken by one [[inputs]] entry at its header.
            return line_of(b / "manifest.toml", r"^\[\[inputs\]\]", 2)

        case("bounds-inverted", src, "manifest.toml", "inputs[1].max ('hour'): 0 is below min 23", bounds_inverted)

        def nullable_integer(b):
            edit(b / "manifest.toml", 'datatype = "INT64"', 'datatype = "INT64"\nnullable = true')
            return line_of(b / "manifest.toml", r"^\[\[inputs\]\]", 2)

        case("nullable-integer", src, "manifest.toml", "can be nullable, not INT64", nullable_integer)

        def quality_metric(b):
            edit(b / "manifest.toml", 'quality = { metric = "mae"', 'quality = { metric = "accuracy"')
            text = (b / "manifest.toml").read_text()
            text = re.sub(r'quality = \{ metric = "accuracy", max = [^,]+, ', 'quality = { metric = "accuracy", min = 0.9, ', text)
            (b / "manifest.toml").write_text(text)
            return line_of(b / "manifest.toml", "^quality = ")

        case("quality-metric-for-classification", src, "manifest.toml", "'accuracy' does not apply to a regression model", quality_metric)

        def monotonic_unknown(b):
            m = b / "manifest.toml"
            m.write_text(m.read_text() + '\n[[contract.monotonic]]\ninput = "distance"\ndirection = "increasing"\n')
            return line_of(m, r"^\[\[contract.monotonic\]\]")

        case("monotonic-unknown-input", src, "manifest.toml", "'distance' is not an input of the model", monotonic_unknown)

        def samples_input_missing(b):
            json_line(b / "samples.jsonl", 2, lambda r: r["inputs"].pop("hour"))
            return 2

        case("samples-input-missing", src, "samples.jsonl", "row 's0001': 'hour' is missing", samples_input_missing)

        def samples_wrong_type(b):
            def change(r):
                r["inputs"]["hour"] = str(r["inputs"]["hour"])

            json_line(b / "samples.jsonl", 3, change)
            return 3

        case("samples-wrong-type", src, "samples.jsonl", "'hour' is a string, but the datatype is INT64", samples_wrong_type)

        def samples_unknown_category(b):
            def change(r):
                r["inputs"]["vehicle"] = "scooter"

            json_line(b / "samples.jsonl", 1, change)
            return 1

        case("samples-unknown-category", src, "samples.jsonl", "'vehicle' = 'scooter' is not one of the categories", samples_unknown_category)

        def samples_null_not_nullable(b):
            def change(r):
                r["inputs"]["distance_km"] = None

            json_line(b / "samples.jsonl", 2, change)
            return 2

        case("samples-null-not-nullable", src, "samples.jsonl", "'distance_km' is null but not nullable", samples_null_not_nullable)

        def samples_no_outputs(b):
            json_line(b / "samples.jsonl", 1, lambda r: r.pop("outputs"))
            return 1

        case("samples-without-outputs", src, "samples.jsonl", "has no outputs; a verification sample needs the training process's prediction", samples_no_outputs)

        def samples_not_json(b):
            edit_line(b / "samples.jsonl", 2, lambda t: t[:-1])
            return 2

        case("samples-not-json", src, "samples.jsonl", "not a JSON record", samples_not_json)

        def holdout_no_target(b):
            json_line(b / "holdout.jsonl", 4, lambda r: r.pop("target"))
            return 4

        case("holdout-without-target", src, "holdout.jsonl", "row 'h0003' has no target; a hold-out row needs the true value", holdout_no_target)

        def reference_shares(b):
            doc = json.loads((b / "reference.json").read_text())
            first = next(iter(doc["inputs"]["vehicle"]["categories"]))
            doc["inputs"]["vehicle"]["categories"][first] += 0.5
            (b / "reference.json").write_text(json.dumps(doc, indent=2) + "\n")

        case("reference-shares", src, "reference.json", "shares must lie in [0, 1] and sum to 1", reference_shares)

        def reference_unknown_input(b):
            doc = json.loads((b / "reference.json").read_text())
            doc["inputs"]["weather"] = doc["inputs"]["distance_km"]
            (b / "reference.json").write_text(json.dumps(doc, indent=2) + "\n")

        case("reference-unknown-input", src, "reference.json", "'weather' is not one of the manifest's inputs", reference_unknown_input)

        def fallback_missing_term(b):
            doc = json.loads((b / "fallback.json").read_text())
            del doc["numeric"]["hour"]["coef"]
            (b / "fallback.json").write_text(json.dumps(doc, indent=2) + "\n")

        case("fallback-term-incomplete", src, "fallback.json", "missing field `coef`", fallback_missing_term)

        def fallback_unknown_input(b):
            doc = json.loads((b / "fallback.json").read_text())
            doc["numeric"]["weather"] = doc["numeric"]["hour"]
            (b / "fallback.json").write_text(json.dumps(doc, indent=2) + "\n")

        case("fallback-unknown-input", src, "fallback.json", "'weather' is not an input of model 'fallback-unknown-input'", fallback_unknown_input)

        def fallback_kind(b):
            doc = json.loads((b / "fallback.json").read_text())
            doc["kind"] = "tree"
            (b / "fallback.json").write_text(json.dumps(doc, indent=2) + "\n")

        case("fallback-unknown-kind", src, "fallback.json", "fallback kind 'tree' is not supported", fallback_kind)

        def fallback_file_missing(b):
            (b / "fallback.json").unlink()

        case("fallback-file-missing", src, "manifest.toml", "'fallback.json' is not in the bundle", fallback_file_missing)


if __name__ == "__main__":
    main()
