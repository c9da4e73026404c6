"""The `[contract]` of a manifest: the budgets a release must meet.

Every budget is optional. `write_bundle` suggests the ones the caller does
not give from what it measures (parity from the export's error, size from
the artifact, quality from the hold-out, latency from ONNX Runtime), and
says which it suggested.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class Parity:
    """`|served - expected| <= abs + rel * |expected|`."""

    abs: float
    rel: float = 0.0

    def allowance(self, expected):
        return self.abs + self.rel * abs(expected)


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    rate_per_s: float = 100
    requests: int = 1000
    max_p99_regression: float | None = None
    max_p50_regression: float | None = None
    max_fallback_rate: float | None = None


@dataclass(frozen=True)
class Size:
    max_model_bytes: int | None = None
    max_memory_bytes: int | None = None
    max_growth: float | None = None


@dataclass(frozen=True)
class Quality:
    """A hold-out metric's bound: `max` for mae, rmse, mape, log_loss and
    brier; `min` for accuracy and roc_auc."""

    metric: str = "mae"
    max: float | None = None
    min: float | None = None
    max_regression: float | None = None


@dataclass(frozen=True)
class Monotonic:
    """The output must move with `input` in one `direction`; for a
    classifier, the probability of the class `class_` (written `class`)."""

    input: str
    direction: str = "increasing"
    class_: int | str | None = None


BUDGETS = {"parity": Parity, "latency": Latency, "size": Size, "quality": Quality, "fallback": Quality}


@dataclass(frozen=True)
class Contract:
    """What a release of the model must show; `None` leaves a budget to be suggested."""

    parity: Parity | None = None
    latency: Latency | None = None
    size: Size | None = None
    #: One budget, or several (a classifier bounds accuracy and log loss, say); the first is the primary metric.
    quality: Quality | tuple[Quality, ...] | None = None
    fallback: Quality | None = None
    monotonic: tuple[Monotonic, ...] = field(default_factory=tuple)
    #: The breaking changes against the last release that this release means,
    #: as Preflight's `compat` suite names them: "vehicle: category 'moto' removed".
    breaking: tuple[str, ...] = field(default_factory=tuple)

    @staticmethod
    def of(value: "Contract | Mapping[str, Any] | None") -> "Contract":
        """A Contract from a Contract, a dict of budgets (dicts or objects), or None."""
        if value is None:
            return Contract()
        if isinstance(value, Contract):
            return value
        unknown = set(value) - set(BUDGETS) - {"monotonic", "breaking"}
        if unknown:
            raise ValueError(f"contract: unknown key(s) {sorted(unknown)}; the keys are {list(BUDGETS) + ['monotonic', 'breaking']}")
        made: dict[str, Any] = {}
        for key, cls in BUDGETS.items():
            v = value.get(key)
            if isinstance(v, (list, tuple)):
                made[key] = tuple(cls(**x) if isinstance(x, Mapping) else x for x in v)
            else:
                made[key] = cls(**v) if isinstance(v, Mapping) else v
        made["monotonic"] = tuple(
            Monotonic(**{("class_" if k == "class" else k): v for k, v in m.items()}) if isinstance(m, Mapping) else m
            for m in value.get("monotonic", ())
        )
        breaking = value.get("breaking", ())
        if isinstance(breaking, str) or not all(isinstance(b, str) for b in breaking):
            raise ValueError("contract: breaking is a list of changes, each a string as Preflight's compat suite names it")
        made["breaking"] = tuple(breaking)
        return Contract(**made)


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        import json

        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def inline_table(budget: object) -> str:
    """A budget as a TOML inline table, in field order, without unset fields."""
    items = [(f.name, getattr(budget, f.name)) for f in fields(budget)]
    body = ", ".join(f"{k} = {toml_value(v)}" for k, v in items if v is not None)
    return f"{{ {body} }}"


def contract_lines(contract: Contract, table: str = "contract", comment: str | None = None) -> list[str]:
    lines = [""]
    if comment:
        lines.append(f"# {comment}")
    lines.append(f"[{table}]")
    for key in BUDGETS:
        budget = getattr(contract, key)
        if isinstance(budget, tuple):
            lines.append(f"{key} = [" + ", ".join(inline_table(b) for b in budget) + "]")
        elif budget is not None:
            lines.append(f"{key} = {inline_table(budget)}")
    if contract.breaking:
        lines.append("breaking = [" + ", ".join(toml_value(b) for b in contract.breaking) + "]")
    for m in contract.monotonic:
        lines += ["", f"[[{table}.monotonic]]", f"input = {toml_value(m.input)}", f"direction = {toml_value(m.direction)}"]
        if m.class_ is not None:
            lines.append(f"class = {toml_value(m.class_)}")
    return lines
