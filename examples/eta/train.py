"""Trains a courier-ETA model on orders.csv and writes it as a Preflight bundle.

Usage: python examples/eta/train.py [OUT]   (default: examples/eta/models/eta-madrid/1)

Then: preflight verify --models examples/eta/models --target process
"""

import sys
from pathlib import Path

import pandas as pd
from lightgbm import LGBMRegressor
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from preflight_bundle import Contract, Monotonic, Parity, write_bundle

HERE = Path(__file__).resolve().parent
out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "models" / "eta-madrid" / "1"

orders = pd.read_csv(HERE / "orders.csv")
features = ["distance_km", "hour", "day_of_week", "vehicle", "prep_time_min", "items", "rain"]
x, y = orders[features], orders["eta_minutes"]
x_train, y_train = x.iloc[:2400], y.iloc[:2400]
x_hold, y_hold = x.iloc[2400:], y.iloc[2400:]

model = Pipeline(
    [
        (
            "pre",
            ColumnTransformer(
                [
                    ("prep", SimpleImputer(strategy="median"), ["prep_time_min"]),
                    ("num", "passthrough", ["distance_km", "hour", "day_of_week", "items", "rain"]),
                    ("vehicle", OneHotEncoder(handle_unknown="ignore"), ["vehicle"]),
                ]
            ),
        ),
        (
            "model",
            LGBMRegressor(
                n_estimators=150,
                learning_rate=0.05,
                num_leaves=31,
                # Columns after "pre": prep_time_min, the five passed through, four vehicles.
                # The contract below promises that a longer trip never predicts a shorter ETA;
                # without this constraint `preflight verify` finds a pair of orders that breaks it.
                monotone_constraints=[0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
                random_state=0,
                verbose=-1,
            ),
        ),
    ]
)
model.fit(x_train, y_train)

written = write_bundle(
    model,
    out,
    train=(x_train, y_train),
    holdout=(x_hold, y_hold),
    samples=300,
    description="Courier ETA, Madrid (example)",
    # What the service accepts, wider than what training happened to see.
    inputs={"distance_km": {"min": 0.0, "max": 50.0}, "hour": {"min": 0, "max": 23}, "day_of_week": {"min": 0, "max": 6}},
    output_range=(0.0, 300.0),
    contract=Contract(parity=Parity(abs=1e-3, rel=1e-4), monotonic=(Monotonic("distance_km", "increasing"),)),
    overwrite=True,
)
print(f"hold-out MAE {written.holdout_metrics['mae']:.2f} min, fallback {written.fallback_metrics['mae']:.2f} min")
