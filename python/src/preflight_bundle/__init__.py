"""Write and check Preflight model bundles from Python.

    from preflight_bundle import write_bundle, Contract, Parity
    write_bundle(pipeline, "models/eta-madrid/3", train=(X_train, y_train),
                 holdout=(X_hold, y_hold), samples=500,
                 contract=Contract(parity=Parity(abs=1e-3, rel=1e-4)))

`python -m preflight_bundle check DIR` checks a bundle or a model
repository with the rules `preflight verify` applies.
"""

from .check import BundleError, check_bundle
from .compact import NotCompactable, compact_trees
from .contract import Contract, Latency, Monotonic, Parity, Quality, Size
from .export import UnsupportedStep, check_pipeline, export_onnx
from .schema import Input
from .write import ParityError, Written, write_bundle

__all__ = [
    "BundleError",
    "Contract",
    "Input",
    "Latency",
    "Monotonic",
    "NotCompactable",
    "Parity",
    "ParityError",
    "Quality",
    "Size",
    "UnsupportedStep",
    "Written",
    "check_bundle",
    "check_pipeline",
    "compact_trees",
    "export_onnx",
    "write_bundle",
]
__version__ = "0.1.0"
