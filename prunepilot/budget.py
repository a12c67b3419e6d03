"""Budgets: what the chosen model must fit, parsed from text such as ``30ms`` or ``2x``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from prunepilot.errors import UsageError

#: The metric a budget bounds, as named in trial results and reports.
METRICS = ("latency_ms", "flops", "params", "size_bytes")

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
    """An upper bound on one metric of the chosen model.

    Exactly one of ``limit`` (absolute, in the metric's unit) and ``fraction`` (a share of the
    baseline's value, resolved once the baseline is measured) is set.

    Attributes:
        metric: One of :data:`METRICS`.
        limit: The absolute bound, or None for a relative budget.
        fraction: The bound as a share of the baseline's value, or None.
        text: The text the budget was parsed from.
    """

    metric: str
    limit: float | None = None
    fraction: float | None = None
    text: str = ""

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UsageError(f"Unknown budget metric {self.metric!r}; accepted: {', '.join(METRICS)}.")
        if (self.limit is None) == (self.fraction is None):
            raise UsageError("A budget needs exactly one of an absolute limit and a fraction.")

    def resolve(self, baseline_value: float) -> float:
        """Returns the absolute bound, given the baseline's value of :attr:`metric`."""
        if self.limit is not None:
            return self.limit
        return baseline_value * float(self.fraction)  # type: ignore[arg-type]

    def describe(self, baseline_value: float | None = None) -> str:
        """A short human description, e.g. ``latency <= 1.20 ms (2x)``."""
        if baseline_value is None and self.limit is None:
            return f"{self.metric} <= {self.fraction:g} x baseline ({self.text})"
        value = self.resolve(baseline_value or 0.0)
        return f"{format_metric(self.metric, value, short=False)} ({self.text})"

    def to_dict(self) -> dict:
        return {"metric": self.metric, "limit": self.limit, "fraction": self.fraction, "text": self.text}


def format_metric(metric: str, value: float, short: bool = True) -> str:
    """Formats a metric value with its unit (``1.23 ms``, ``4.5 MFLOPs``, ``300k params``)."""
    if metric == "latency_ms":
        text = f"{value:.3g} ms" if short else f"latency <= {value:.3f} ms"
        return text
    if metric == "flops":
        text = _si(value) + "FLOPs"
    elif metric == "params":
        text = _si(value) + " params"
    else:
        text = _si(value) + "B"
    prefix = (
        "" if short else {"flops": "FLOPs", "params": "parameters", "size_bytes": "size"}[metric] + " <= "
    )
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
