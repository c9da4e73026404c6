"""The Python checker and the Rust gate accept the same bundles.

`tests/agree/<case>/1/` are bundles the package wrote from unrounded floats
(`make_agreement_cases.py`); the Rust crate's test reads the same folders.
The property test writes bundles from random float frames and checks each
with both implementations: `check_bundle` here and `preflight check`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import needs_binaries, preflight_binary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

from preflight_bundle import Contract, Latency, Parity, Size, check_bundle, write_bundle

AGREE = Path(__file__).resolve().parent / "agree"
CASES = sorted(p.name for p in AGREE.iterdir() if (p / "1").is_dir())


def rust_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(preflight_binary()), "check", str(path)], capture_output=True, text=True, timeout=60)


def test_there_are_agreement_cases():
    assert {"diabetes", "wide-115"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_agreement_case_checks_here(case):
    assert check_bundle(AGREE / case / "1").warnings == []


@needs_binaries
@pytest.mark.parametrize("case", CASES)
def test_agreement_case_checks_in_rust(case):
    result = rust_check(AGREE / case / "1")
    assert result.returncode == 0, result.stdout + result.stderr


# Finite floats of every magnitude the format carries, unrounded, and nulls.
FLOATS = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False, allow_subnormal=True)
COLUMNS = 3
ROWS = 24


@needs_binaries
@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
@settings(max_examples=int(os.environ.get("PREFLIGHT_AGREEMENT_EXAMPLES", "25")), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(values=arrays(np.float64, (ROWS, COLUMNS), elements=FLOATS), nulls=arrays(np.bool_, (ROWS, COLUMNS)))
def test_random_float_frames_are_accepted_by_both_checkers(tmp_path_factory, values, nulls):
    # Every column keeps at least two distinct values, so that it is a feature.
    values[0], values[1] = 1.0, 2.0
    nulls[:2] = False
    x = pd.DataFrame(np.where(nulls, np.nan, values), columns=[f"f{k}" for k in range(COLUMNS)])
    y = pd.Series(np.nan_to_num(x.to_numpy()).sum(axis=1) / 1e6, name="target")
    pipe = Pipeline([("pre", ColumnTransformer([("num", SimpleImputer(), list(x.columns))])), ("model", Ridge())])
    pipe.fit(x, y)
    out = tmp_path_factory.mktemp("frames") / "frame" / "1"
    # The values and their bounds are under test, not the model's accuracy.
    contract = Contract(parity=Parity(abs=1e30), latency=Latency(p50_ms=5.0, p99_ms=25.0), size=Size(max_model_bytes=100_000))
    write_bundle(pipe, out, train=(x, y), holdout=(x, y), samples=ROWS, contract=contract, fallback=None, quiet=True)
    check_bundle(out)
    result = rust_check(out)
    assert result.returncode == 0, result.stdout + result.stderr
