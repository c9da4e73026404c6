"""Small synthetic delivery data and the pipelines the tests export."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

VEHICLES = ["bicycle", "car", "motorbike"]
ROOT = Path(__file__).resolve().parents[2]


def preflight_binary() -> Path | None:
    """The built `preflight`, with `preflight-serve` beside it."""
    found = os.environ.get("PREFLIGHT_BIN")
    if found:
        return Path(found)
    for profile in ("debug", "release"):
        candidate = ROOT / "target" / profile / "preflight"
        if candidate.is_file() and (candidate.parent / "preflight-serve").is_file():
            return candidate
    return None


needs_binaries = pytest.mark.skipif(
    preflight_binary() is None
    or not (ROOT / "target" / "ort" / "libonnxruntime.so").is_file()
    and "ORT_DYLIB_PATH" not in os.environ,
    reason="needs a built preflight and preflight-serve (cargo build) and ONNX Runtime (cargo xtask ort)",
)


def orders(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    distance = np.round(rng.lognormal(np.log(3.0), 0.5, n), 2)
    hour = rng.integers(0, 24, n).astype(np.int64)
    vehicle = rng.choice(VEHICLES, n)
    prep = np.round(rng.gamma(4.0, 3.0, n), 1)
    prep = np.where(rng.random(n) < 0.15, np.nan, prep)
    speed = np.array([{"bicycle": 14.0, "car": 22.0, "motorbike": 24.0}[v] for v in vehicle])
    minutes = 5 + np.nan_to_num(prep, nan=12.0) + distance / speed * 60 + 3 * np.isin(hour, [12, 13, 20, 21])
    minutes = np.round(minutes + rng.normal(0, 1.0, n), 2)
    x = pd.DataFrame(
        {"distance_km": distance, "hour": hour, "vehicle": pd.Series(vehicle, dtype=object), "prep_time_min": prep}
    )
    return x, pd.Series(minutes, name="eta_minutes")


def preprocessing(scaled: bool = False) -> ColumnTransformer:
    hour = Pipeline([("scale", StandardScaler())]) if scaled else "passthrough"
    return ColumnTransformer(
        [
            ("prep", SimpleImputer(strategy="median"), ["prep_time_min"]),
            ("pass", "passthrough", ["distance_km"]),
            ("hour", hour, ["hour"]),
            ("vehicle", OneHotEncoder(handle_unknown="ignore"), ["vehicle"]),
        ]
    )


def regressor(family: str):
    """A small estimator of each regression family of the support matrix."""
    from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
    from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge

    made = {
        "sklearn-gbdt": lambda: GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0),
        "sklearn-forest": lambda: RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0, n_jobs=1),
        "sklearn-extra-trees": lambda: ExtraTreesRegressor(n_estimators=10, max_depth=6, random_state=0, n_jobs=1),
        "sklearn-hist-gbdt": lambda: HistGradientBoostingRegressor(max_iter=30, max_depth=3, random_state=0),
        "sklearn-linear": lambda: Ridge(alpha=1.0),
        "sklearn-linear-regression": LinearRegression,
        "sklearn-lasso": lambda: Lasso(alpha=0.01),
        "sklearn-elastic-net": lambda: ElasticNet(alpha=0.01),
    }
    if family in made:
        return made[family]()
    if family == "lightgbm":
        from lightgbm import LGBMRegressor

        return LGBMRegressor(n_estimators=30, max_depth=3, num_leaves=8, random_state=0, n_jobs=1, verbose=-1)
    if family == "xgboost":
        from xgboost import XGBRegressor

        return XGBRegressor(n_estimators=30, max_depth=3, random_state=0, n_jobs=1)
    raise ValueError(family)


# One of each family of the support matrix (`export.ESTIMATORS`); the linear
# family's other estimators are in LINEAR.
FAMILIES = [
    "sklearn-gbdt", "sklearn-forest", "sklearn-extra-trees", "sklearn-hist-gbdt", "sklearn-linear", "lightgbm", "xgboost",
]
LINEAR = ["sklearn-linear-regression", "sklearn-lasso", "sklearn-elastic-net"]
# The families whose trees are summed and whose export of the test data is
# float32, which `compact_trees` rewrites (HistGradientBoosting's is float64;
# so is LightGBM's, whose float32 export answers otherwise than training
# beside its splits: test_probes.py).
BOOSTED = ["sklearn-gbdt", "xgboost"]


def fitted(family: str, x: pd.DataFrame, y: pd.Series, scaled: bool = False) -> Pipeline:
    return Pipeline([("pre", preprocessing(scaled)), ("model", regressor(family))]).fit(x, y)


@pytest.fixture(scope="session")
def data():
    x_train, y_train = orders(600, 1)
    x_hold, y_hold = orders(200, 2)
    return x_train, y_train, x_hold, y_hold
