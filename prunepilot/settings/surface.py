"""Which surface a job came through, so that messages name a setting as its user wrote it: the flag
(``--ratio-max``) on the command line, the keyword (``ratio_max``) from Python."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from prunepilot.errors import UsageError, invalid_parameter

__all__ = ["command_line", "field_owner", "invalid_field", "named"]

_SURFACE: contextvars.ContextVar[str] = contextvars.ContextVar("prunepilot_surface", default="python")


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Within it, messages name settings by their flags (``prunepilot``'s commands run in it)."""
    token = _SURFACE.set("cli")
    try:
        yield
    finally:
        _SURFACE.reset(token)


def named(name: str) -> str:
    """The setting ``name`` as the user wrote it: ``--ratio-max`` on the command line, else ``ratio_max``."""
    return "--" + name.replace("_", "-") if _SURFACE.get() == "cli" else name


def field_owner(name: str) -> str:
    """The standard message's owner: ``JobSpec (--finetune-steps)`` on the command line, else ``JobSpec``."""
    return f"JobSpec ({named(name)})" if _SURFACE.get() == "cli" else "JobSpec"


def invalid_field(name: str, accepted: str, got: object) -> UsageError:
    """The standard error of a job field (``The 'x' parameter of JobSpec (--x) must be ...``)."""
    return invalid_parameter(name, field_owner(name), accepted, got)
