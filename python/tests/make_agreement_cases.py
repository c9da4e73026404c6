"""Writes the agreement fixtures in tests/agree/: bundles both checkers accept.

Usage: python tests/make_agreement_cases.py

Each case is a model folder, tests/agree/<case>/, holding a bundle in 1/
written by `write_bundle` from data whose floats are unrounded, as real
features are: the Python checker (tests/test_agreement.py) and the Rust
crate's test must both accept every value the package wrote, bounds
included. The cases:

- `diabetes`: scikit-learn's bundled diabetes data, ten standardised floats;
- `wide-115`: the fixture generator's 115-column zone-demand frame
  (`fixtures/generate/wide.py`), with integers, booleans, categories and
  nulls.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "fixtures" / "generate"))

import wide  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.datasets import load_diabetes  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

from preflight_bundle import Contract, Latency, Parity, Size, write_bundle  # noqa: E402

AGREE = HERE / "agree"
# Budgets given, so that nothing is measured and the files are the same run to run.
CONTRACT = Contract(parity=Parity(abs=1e-3, rel=1e-4), latency=Latency(p50_ms=5.0, p99_ms=25.0), size=Size(max_model_bytes=1_000_000))


def diabetes(out: Path) -> None:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    y = y.rename("progression")
    columns = list(x.columns)
    pipe = Pipeline([("pre", ColumnTransformer([("num", "passthrough", columns)])), ("model", Ridge())])
    pipe.fit(x.iloc[:300], y.iloc[:300])
    write_bundle(pipe, out, train=(x.iloc[:300], y.iloc[:300]), holdout=(x.iloc[300:], y.iloc[300:]),
                 samples=300, contract=CONTRACT, description="Agreement case: diabetes", quiet=True)


def wide_115(out: Path) -> None:
    x, y = wide.zones(400, 11)
    xh, yh = wide.zones(60, 12)
    pre = wide.preprocessing()
    pipe = Pipeline([("pre", pre), ("model", Ridge())]).fit(x, y)
    write_bundle(pipe, out, train=(x, y), holdout=(xh, yh), samples=60, contract=CONTRACT,
                 description="Agreement case: 115 columns", quiet=True)


CASES = {"diabetes": diabetes, "wide-115": wide_115}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, write in CASES.items():
            write(Path(tmp) / name / "1")
        if AGREE.exists():
            shutil.rmtree(AGREE)
        shutil.copytree(tmp, AGREE)


if __name__ == "__main__":
    main()
