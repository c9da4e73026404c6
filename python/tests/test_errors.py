"""The Python checker against every error fixture in tests/errors/.

Each case is `errors/<case>/1/` (a broken bundle in a model folder named
after the case) with `errors/<case>/expect.toml` naming the file the error
is in, optionally its line, and a phrase its message contains. The Rust
crate's test reads the same folders, so both implementations agree.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from preflight_bundle import BundleError, check_bundle

ERRORS = Path(__file__).resolve().parent / "errors"
CASES = sorted(p.name for p in ERRORS.iterdir() if (p / "expect.toml").is_file())


def test_there_are_enough_cases():
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES)
def test_error_fixture(case):
    expect = tomllib.loads((ERRORS / case / "expect.toml").read_text())
    assert set(expect) <= {"file", "line", "contains"}, expect
    with pytest.raises(BundleError) as caught:
        check_bundle(ERRORS / case / "1")
    error = caught.value
    assert error.file.name == expect["file"], str(error)
    if "line" in expect:
        assert error.line == expect["line"], str(error)
    assert expect["contains"] in str(error), str(error)
