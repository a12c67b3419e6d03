"""What a setting's value must be: each constraint checks a value, says what it accepts in the
standard message ("must be <accepted>"), and gives the same rule to the JSON Schema and to argparse.

A constraint's rules (what a new one must keep): ``accepted`` reads after "must be"; ``allows``
never raises (a value of the wrong type is simply not allowed); ``schema`` says no more than
``allows`` checks (an editor must never flag a value the job accepts).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prunepilot.errors import integer_range

__all__ = ["Check", "Constraint", "Integer", "Items", "Number", "OneOf", "is_int", "is_number"]


class Constraint:
    """Base class: what a setting's value must be."""

    def allows(self, value: Any) -> bool:
        """Whether ``value`` is accepted (never raises)."""
        raise NotImplementedError

    @property
    def accepted(self) -> str:
        """What is accepted, as the standard message says it after "must be"."""
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        """The JSON Schema keywords of the same rule (beside the type)."""
        return {}

    def choices(self) -> list[Any] | None:
        """The values a flag offers, when they are few."""
        return None


def is_int(value: Any) -> bool:
    """An integer, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number (NumPy's too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Integer(Constraint):
    """An integer (not a bool) in ``[low, high]`` (``high`` None: no upper bound)."""

    low: int
    high: int | None = None

    def allows(self, value: Any) -> bool:
        return is_int(value) and value >= self.low and (self.high is None or value <= self.high)

    @property
    def accepted(self) -> str:
        return integer_range(self.low, self.high)

    def schema(self) -> dict[str, Any]:
        return {"minimum": self.low, **({} if self.high is None else {"maximum": self.high})}


@dataclass(frozen=True)
class Number(Constraint):
    """A finite number between ``low`` (open when ``low_open``) and ``high`` (None: unbounded).

    ``text`` words what is accepted where the interval alone reads badly ("a number of seconds > 0").
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    text: str | None = None

    def allows(self, value: Any) -> bool:
        if not is_number(value) or not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or value <= self.high
        return above and below

    @property
    def accepted(self) -> str:
        if self.text:
            return self.text
        if self.high is None:
            bound = "" if self.low is None else f" {'>' if self.low_open else '>='} {self.low}"
            return "a finite number" + bound
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}]"

    def schema(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.low is not None:
            found["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            found["maximum"] = self.high
        return found


@dataclass(frozen=True)
class OneOf(Constraint):
    """One of a few values; ``values`` may be a function, for a registry read when checked.

    ``listed``: the flag offers the values (argparse's choices, its "invalid choice" error); False
    leaves them to the job's check and its standard message.
    """

    values: Sequence[Any] | Callable[[], Sequence[Any]]
    listed: bool = True

    def _values(self) -> list[Any]:
        return list(self.values() if callable(self.values) else self.values)

    def allows(self, value: Any) -> bool:
        return isinstance(value, str) and value in self._values()

    @property
    def accepted(self) -> str:
        return f"one of {self._values()}"

    def schema(self) -> dict[str, Any]:
        return {"enum": self._values()}

    def choices(self) -> list[Any] | None:
        return self._values() if self.listed else None


@dataclass(frozen=True)
class Items(Constraint):
    """A non-empty list (or tuple) whose every item ``item`` allows (strings: not empty)."""

    item: Constraint | None
    text: str
    non_empty: bool = True

    def allows(self, value: Any) -> bool:
        if not isinstance(value, (list, tuple)) or (self.non_empty and not value):
            return False
        if self.item is None:
            return all(isinstance(v, str) and v != "" for v in value)
        return all(self.item.allows(v) for v in value)

    @property
    def accepted(self) -> str:
        return self.text

    def schema(self) -> dict[str, Any]:
        items = {"minLength": 1} if self.item is None else self.item.schema()
        return {**({"minItems": 1} if self.non_empty else {}), "items": items}


@dataclass(frozen=True)
class Check(Constraint):
    """A value ``predicate`` allows, worded by ``text``, ``keywords`` its JSON Schema (for a rule no
    other constraint states: a pattern, a folder name)."""

    predicate: Callable[[Any], bool]
    text: str
    keywords: dict[str, Any] = field(default_factory=dict, compare=False)

    def allows(self, value: Any) -> bool:
        try:
            return bool(self.predicate(value))
        except (TypeError, ValueError):
            return False

    @property
    def accepted(self) -> str:
        return self.text

    def schema(self) -> dict[str, Any]:
        return dict(self.keywords)
