"""Importing what a job names by path (``package.module:attribute``), with one-line errors."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable

from prunepilot.errors import UsageError

__all__ = ["callable_name", "import_object", "resolve_callable"]


def import_object(path: str, what: str) -> Callable:
    """Imports ``package.module:attribute``; ``what`` names the flag for error messages.

    The working directory is importable, as it is for ``python -m``.

    Raises:
        UsageError: when the path is malformed, cannot be imported, or is not callable.
    """
    if not isinstance(path, str) or not is_import_path(path):
        raise UsageError(f"{what} must look like 'package.module:factory'. Got {path!r} instead.")
    module_name, attribute = path.split(":", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is reported as one line
        raise UsageError(
            f"Cannot import {module_name!r} named by {what} ({type(exc).__name__}: {exc})."
        ) from exc
    obj = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{module_name!r} has no attribute {attribute!r} (named by {what}).")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{path!r} named by {what} is not callable.")
    return obj


def resolve_callable(value: str | Callable, what: str) -> Callable:
    """``value`` itself when it is a callable (given from Python), else :func:`import_object`."""
    return value if callable(value) else import_object(value, what)


def callable_name(value: str | Callable | None) -> str | None:
    """What records call ``value``: the import path as given, or ``module:qualname`` of a callable
    given from Python (which may not be importable: a lambda, a function of a script)."""
    if value is None or isinstance(value, str):
        return value
    module = getattr(value, "__module__", None) or "?"
    return f"{module}:{getattr(value, '__qualname__', type(value).__qualname__)}"


def is_import_path(value: str) -> bool:
    """Whether ``value`` has the shape of ``package.module:attribute``."""
    return re.fullmatch(r"[\w.]+:[\w.]+", value) is not None
