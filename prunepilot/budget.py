"""Budgets: what the chosen model must fit, parsed from text such as ``30ms`` or ``2x``.

A :class:`Budget` is what the user wrote; :class:`BudgetLimit` is the one judge of it once the
baseline is measured: every "within budget?" in prunepilot (the trial constraint, the screen, the
final check) asks a ``BudgetLimit``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from prunepilot.errors import UsageError

__all__ = ["ACCEPTED_FORMS", "COSTS", "Budget", "BudgetLimit", "format_cost", "parse_budget"]

#: The costs a budget may bound, as named in trial results and reports.
COSTS = ("latency_ms", "flops", "params", "size_bytes")

ACCEPTED_FORMS = (
    "latency '30ms', '1.5ms', '800us', '0.03s'; "
    "a share of the baseline's latency '50%'; a speed-up '2x'; "
    "FLOPs '120MFLOPs', '1.2GFLOPs'; parameters '300k params', '1.2M params'; "
    "size '2MB', '512KB', '1.5MiB'"
)

_NUMBER = r"(?P<n>\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_LATENCY_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}
_SI = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_BYTES = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9,
    "kib": 2**10, "mib": 2**20, "gib": 2**30,
}  # fmt: skip


@dataclass(frozen=True)
class Budget:
    """An upper bound on one cost of the chosen model, as the user gave it.

    Exactly one of ``limit`` (absolute, in the cost's unit) and ``fraction`` (a share of the
    baseline's value, resolved once the baseline is measured) is set.

    Attributes:
        cost: One of :data:`COSTS`.
        limit: The absolute bound, or None for a relative budget.
        fraction: The bound as a share of the baseline's value, or None.
        text: The text the budget was parsed from.
    """

    cost: str
    limit: float | None = None
    fraction: float | None = None
    text: str = ""

    def __post_init__(self) -> None:
        _check_cost(self.cost)
        if (self.limit is None) == (self.fraction is None):
            raise UsageError("A budget needs exactly one of an absolute limit and a fraction.")

    def resolve(self, baseline_value: float) -> BudgetLimit:
        """The budget's judge, given the baseline's value of :attr:`cost`."""
        limit = self.limit if self.limit is not None else baseline_value * float(self.fraction)  # type: ignore
        return BudgetLimit(self.cost, limit, self.fraction, self.text)


@dataclass(frozen=True)
class BudgetLimit:
    """A resolved budget: the one judge of whether a cost fits.

    Attributes:
        cost: One of :data:`COSTS`.
        limit: The absolute bound, in the cost's unit.
        fraction: For a relative budget, the share of the baseline it was resolved from (so that
            :meth:`limit_for` can resolve it again against a re-measured baseline); None otherwise.
        text: The budget's text, for messages.
    """

    cost: str
    limit: float
    fraction: float | None = None
    text: str = ""

    def __post_init__(self) -> None:
        _check_cost(self.cost)
        if not (isinstance(self.limit, (int, float)) and math.isfinite(self.limit) and self.limit > 0):
            raise UsageError(
                "The 'limit' parameter of BudgetLimit must be a finite number > 0. "
                f"Got {self.limit!r} instead."
            )

    def excess(self, value: float) -> float:
        """Relative excess of ``value`` over the limit: <= 0 fits (Optuna's constraint convention)."""
        return (value - self.limit) / self.limit

    def fits(self, value: float, margin: float = 0.0) -> bool:
        """Whether ``value`` is within the limit, loosened (``margin > 0``) or tightened by a share."""
        return self.excess(value) <= margin

    def limit_for(self, remeasured_baseline: float) -> BudgetLimit:
        """The budget judged against a baseline re-measured side by side with a candidate.

        A relative latency budget (``2x``, ``50%``) follows the re-measured baseline, so that drift
        in the machine's speed hits both alike; any other budget is returned as it is.
        """
        if self.cost == "latency_ms" and self.fraction is not None:
            return replace(self, limit=self.fraction * remeasured_baseline)
        return self

    def to_dict(self) -> dict:
        """Plain data for reports (the cost under ``metric``, as run files always had it)."""
        return {"metric": self.cost, "limit": self.limit, "fraction": self.fraction, "text": self.text}


def _check_cost(cost: str) -> None:
    """Raises ``UsageError`` unless ``cost`` is one of :data:`COSTS`."""
    if cost not in COSTS:
        raise UsageError(f"Unknown budget cost {cost!r}; accepted: {', '.join(COSTS)}.")


def format_cost(cost: str, value: float, short: bool = True) -> str:
    """Formats a cost with its unit (``1.23 ms``, ``4.5 MFLOPs``, ``300k params``)."""
    if cost == "latency_ms":
        text = f"{value:.3g} ms" if short else f"latency <= {value:.3f} ms"
        return text
    if cost == "flops":
        text = _si(value) + "FLOPs"
    elif cost == "params":
        text = _si(value) + " params"
    else:
        text = _si(value) + "B"
    prefix = "" if short else {"flops": "FLOPs", "params": "parameters", "size_bytes": "size"}[cost] + " <= "
    return prefix + text


def _si(value: float) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}"
    return f"{value:.3g}"


def parse_budget(text: str) -> Budget:
    """Parses a budget such as ``30ms``, ``50%``, ``2x``, ``120MFLOPs``, ``300k params``, ``2MB``.

    Raises:
        UsageError: naming the accepted forms, when the text is none of them or not positive.
    """
    if not isinstance(text, str):
        raise UsageError(f"The budget must be text. Got {text!r}; accepted: {ACCEPTED_FORMS}.")
    raw = text.strip()
    compact = raw.replace(" ", "")
    match = re.fullmatch(_NUMBER + r"(?P<unit>.*)", compact, flags=re.ASCII)
    budget = None
    if match:
        number = float(compact[: match.start("unit")])
        unit = match.group("unit")
        budget = _from_unit(number, unit, raw)
    if budget is None:
        raise UsageError(f"Cannot read the budget {raw!r}; accepted: {ACCEPTED_FORMS}.")
    value = budget.limit if budget.limit is not None else budget.fraction
    if not (math.isfinite(value) and value > 0):  # type: ignore[arg-type]
        raise UsageError(f"The budget {raw!r} must be a finite positive amount; accepted: {ACCEPTED_FORMS}.")
    if budget.fraction is not None and budget.fraction > 1:
        raise UsageError(
            f"The budget {raw!r} asks for a model slower than the baseline; "
            "use a share below 100% or a speed-up above 1x."
        )
    return budget


def _from_unit(number: float, unit: str, raw: str) -> Budget | None:
    lower = unit.lower()
    if lower in _LATENCY_UNITS:
        return Budget("latency_ms", limit=number * _LATENCY_UNITS[lower], text=raw)
    if unit == "%":
        return Budget("latency_ms", fraction=number / 100.0, text=raw)
    if lower == "x":
        return Budget("latency_ms", fraction=1.0 / number if number else 0.0, text=raw)
    flops = re.fullmatch(r"([kmgt]?)flops?", lower)
    if flops:
        return Budget("flops", limit=number * _SI[flops.group(1)], text=raw)
    params = re.fullmatch(r"([kmg]?)(?:params?|parameters?)", lower)
    if params:
        return Budget("params", limit=number * _SI[params.group(1)], text=raw)
    if lower in _BYTES:
        return Budget("size_bytes", limit=number * _BYTES[lower], text=raw)
    return None
