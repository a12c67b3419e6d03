"""Rules between settings: what a single declaration cannot say ("ratio_min at most ratio_max").

A rule's rules (what a new one must keep): it reads the job, never changes it; it blames the one
field a user would change; a rule that cannot be judged because another field is wrong stays
silent (that field's own error says what is wrong).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prunepilot.errors import UsageError
from prunepilot.settings.surface import invalid_field

__all__ = ["Rule", "rule_problems"]


@dataclass(frozen=True)
class Rule:
    """A rule between settings.

    Attributes:
        field: The setting an error blames.
        holds: Whether the job keeps the rule; it may raise ``UsageError`` with a message of its own.
        accepted: What ``field`` must be when the rule fails (after "must be"), or a function of the job.
        reads: The other fields it reads: while one of them is wrong, the rule stays silent.
    """

    field: str
    holds: Callable[[Any], bool]
    accepted: str | Callable[[Any], str] = ""
    reads: tuple[str, ...] = ()


def rule_problems(job: Any, rules: Sequence[Rule], wrong: set[str]) -> list[UsageError]:
    """One error for each rule ``job`` breaks, but for fields already ``wrong`` (one error a field)."""
    found = []
    for rule in rules:
        if rule.field in wrong or wrong.intersection(rule.reads):
            continue
        try:
            if rule.holds(job):
                continue
            accepted = rule.accepted(job) if callable(rule.accepted) else rule.accepted
            problem = invalid_field(rule.field, accepted, getattr(job, rule.field))
        except UsageError as exc:
            problem = UsageError(str(exc), rule.field)
        except (TypeError, ValueError, AttributeError):
            continue  # it reads a wrong field, whose own error says what is wrong
        found.append(problem)
        wrong.add(rule.field)
    return found
