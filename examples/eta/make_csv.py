"""Writes orders.csv: 3,000 synthetic Madrid orders from the fixture pipeline's
data generator (fixtures/generate/cities.py), for the example to train on.

Usage: python examples/eta/make_csv.py
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "fixtures" / "generate"))

from cities import CITIES, orders  # noqa: E402

frame = orders(CITIES["madrid"], 3000, np.random.default_rng(2024))
frame.to_csv(HERE / "orders.csv", index=False)
print(f"wrote {HERE / 'orders.csv'}: {len(frame)} orders")
