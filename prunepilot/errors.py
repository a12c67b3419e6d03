"""Errors that the command line turns into one clear line and an exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_BUDGET_NOT_MET = 3
EXIT_INTERRUPTED = 130
#: Characters of a value a message echoes (the rest is counted, not shown).
ECHO_LIMIT = 200
#: Lines a message of several problems shows.
LINES_SHOWN = 20


class PrunepilotError(Exception):
    """Base class: an error whose message is meant for the user, as one line."""

    exit_code = EXIT_INTERNAL


class UsageError(PrunepilotError, ValueError):
    """Bad input: a wrong path, a malformed value, a model that cannot be traced.

    Attributes:
        field: The parameter that is wrong, when one is (job files name its key).
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UsageErrors(UsageError):
    """Several pieces of bad input at once (``prunepilot validate`` reports each, one line each, up
    to :data:`LINES_SHOWN`, then how many more)."""

    def __init__(self, errors: list[UsageError]) -> None:
        lines = [str(e) for e in errors[:LINES_SHOWN]]
        if len(errors) > LINES_SHOWN:
            lines.append(f"... and {len(errors) - LINES_SHOWN:,} more problems of the same input.")
        super().__init__("; ".join(lines))
        self.lines = lines


class BudgetNotMetError(PrunepilotError):
    """The search ended without any trial within the budget (the report is still written)."""

    exit_code = EXIT_BUDGET_NOT_MET


class StorageError(PrunepilotError):
    """The run's folder could not be written (no space left, read-only, deleted); what was written
    before is whole, and the message says how to continue."""


class Interrupted(PrunepilotError):
    """The run was stopped by the user; what finished is saved and ``--resume`` continues it."""

    exit_code = EXIT_INTERRUPTED


def cut(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` as a message echoes it: whole up to ``limit`` characters, else its start and its length
    (a value read from a file may be megabytes long)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)``, cut as :func:`cut` cuts text."""
    return cut(repr(value), limit)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-blank line of ``exc``'s message, cut to ``limit`` characters ("" when it has none):
    how a one-line error quotes the exception beneath it."""
    return next((line.strip()[:limit] for line in str(exc).splitlines() if line.strip()), "")


def check_integer(owner: str, name: str, value: object, low: int, high: int | None = None) -> None:
    """Raises the standard message unless ``value`` is an integer (not a bool) in [low, high]."""
    too_high = high is not None and isinstance(value, int) and value > high
    if isinstance(value, bool) or not isinstance(value, int) or value < low or too_high:
        raise invalid_parameter(name, owner, integer_range(low, high), value)


def integer_range(low: int, high: int | None = None) -> str:
    """What an integer in ``[low, high]`` reads as after "must be" (``high`` None: no upper bound)."""
    return f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"


def invalid_parameter(name: str, owner: str, accepted: str, got: object) -> UsageError:
    """Builds the one message shape used for every invalid parameter.

    Example: ``The 'ratio' parameter of Policy must be in [0, 0.95]. Got 1.2 instead.``
    """
    message = f"The {name!r} parameter of {owner} must be {accepted}. Got {shown(got)} instead."
    return UsageError(message, name)
