"""Which runs may make prunepilot import the code they name.

A run folder is data: its ``config.json`` and ``plan.json`` name factories (``--model``, ``--data``,
``--metric``, ``--loss``) that re-creating its model imports and calls. A folder someone sends could
name anything (``os:abort``). A run that a search made on this machine is trusted: the search records
a digest of its ``config.json`` in the cache, so the run, moved or copied, is still trusted, while a
folder whose job names other code is not (nor a plan naming code its job does not). Reading any other
run that names code (``report``, ``export``, ``search --resume``, ``load_plan``) is refused with one
line listing that code, until the user says ``--trust-run`` (``trust=True`` from Python), which
records it as trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from prunepilot.errors import UsageError, cut
from prunepilot.rundir import cache_dir, write_atomically

#: Where trusted runs are recorded, in the cache.
TRUSTED_FOLDER = "trusted-runs"


def named_code(values: dict) -> list[str]:
    """The import paths a run's saved job (or plan) names: what re-creating its model would run."""
    named = [values.get(key) for key in ("model", "factory", "data", "metric", "loss")]
    return list(dict.fromkeys(n for n in named if isinstance(n, str) and n))


def trusted(run: Path) -> bool:
    """Whether a search on this machine made ``run`` (or the user trusted it)."""
    token = _token(run)
    return token is not None and (cache_dir() / TRUSTED_FOLDER / token).is_file()


def record_trusted(run: Path) -> None:
    """Records ``run`` as trusted (best effort: a cache that cannot be written only costs a flag)."""
    token = _token(run)
    if token is None:
        return
    try:
        (cache_dir() / TRUSTED_FOLDER).mkdir(parents=True, exist_ok=True)
        write_atomically(cache_dir() / TRUSTED_FOLDER / token, b"")
    except OSError:
        pass


def check_trusted(run: Path, code: Iterable[str], trust: bool, flag: str = "--trust-run") -> None:
    """Refuses to read ``run`` when it names ``code`` to import and is not trusted (``trust`` records
    it as trusted instead).

    Raises:
        UsageError: one line listing the code, and ``flag``.
    """
    code = list(code)
    if not code or (trusted(run) and set(code) <= set(_job_code(run))):
        return
    if trust:
        record_trusted(run)
        return
    shown = ", ".join(cut(c, 80) for c in code[:4])
    raise UsageError(
        f"The run {cut(str(run))} was not made on this machine and names code that reading it would import "
        f"and run ({shown}); if you trust where it came from, add {flag}."
    )


def _token(run: Path) -> str | None:
    """A digest of the run's ``config.json`` (None without one, or when it is a link)."""
    config = Path(run) / "config.json"
    try:
        if config.is_symlink():
            return None
        return hashlib.sha256(config.read_bytes()).hexdigest()[:32]
    except OSError:
        return None


def _job_code(run: Path) -> list[str]:
    """The code the run's saved job names (what trusting the run covers)."""
    try:
        return named_code(json.loads((Path(run) / "config.json").read_text()))
    except (OSError, ValueError, AttributeError):
        return []
