"""Job files: a TOML file that holds everything the flags hold, for jobs kept under version control.

Every key is a setting's declaration (its ``key``); flags given on the command line override the
file. An error names the file, the key's path (``space.ratio_max``) and what is accepted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from prunepilot.errors import UsageError, UsageErrors, cut
from prunepilot.errors import shown as show
from prunepilot.settings.declare import KIND_TEXT, Setting, kind_allows

__all__ = ["JobFile", "load_job_file"]


@dataclass(frozen=True)
class JobFile:
    """A parsed job file: JobSpec field values, and where each came from.

    Attributes:
        path: The file.
        values: JobSpec field -> value.
        origin: JobSpec field -> key path in the file (for error messages).
        keys: Every setting's key path, by field (to name a key the file lacks).
    """

    path: str
    values: dict[str, Any]
    origin: dict[str, str]
    keys: dict[str, str]

    def error(self, field: str, reason: str) -> UsageError:
        """The standard error for ``field``: file, key path, reason."""
        where = self.origin.get(field, self.keys.get(field, field))
        return UsageError(f"{self.path}: {where}: {reason}", field)

    def blames(self, field: str | None) -> bool:
        """Whether an error about ``field`` is the file's (it set the field, or lacks a required one)."""
        return field in self.origin or field == "budget"


def load_job_file(path: str | Path, settings: Sequence[Setting]) -> JobFile:
    """Reads a job file and checks each key's type against the ``settings`` declared.

    Raises:
        UsageError: naming the file, the key path and what is accepted.
    """
    shown = cut(str(path))
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark is allowed
    except OSError as exc:
        raise UsageError(f"Cannot read the job file {shown!r}: {exc.strerror}.") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{shown}: not a TOML job file (not UTF-8 text: byte {exc.start}).") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{shown}: not valid TOML ({exc}).") from None
    except RecursionError:
        raise UsageError(f"{shown}: not a TOML job file (nested too deeply to read).") from None
    by_key = {s.key: s for s in settings if s.key}
    sections = list(dict.fromkeys(s.section for s in by_key.values() if s.section))
    values, origin, problems = {}, {}, []
    for dotted, value in _flatten(data, shown, sections):
        declared = by_key.get(dotted)
        if declared is None:
            section = dotted.split(".")[0]
            if "." in dotted and section in sections:
                accepted = [k for k in by_key if k.startswith(section + ".")]
            else:
                accepted = [k for k in by_key if "." not in k] + [f"[{s}]" for s in sections]
            accepted_keys = ", ".join(accepted)
            problems.append(UsageError(f"{shown}: {cut(dotted)}: unknown key; accepted: {accepted_keys}."))
            continue
        try:
            values[declared.name] = _checked(declared, value, shown)
        except UsageError as problem:
            problems.append(problem)
        origin[declared.name] = dotted
    if len(problems) > 1:  # every wrong key at once, one line each
        raise UsageErrors(problems)
    if problems:
        raise problems[0]
    return JobFile(shown, values, origin, {s.name: key for key, s in by_key.items()})


def _flatten(
    data: dict[str, Any], shown: str, sections: list[str], prefix: str = ""
) -> Iterator[tuple[str, Any]]:
    for name, value in data.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict):
            if prefix:
                raise UsageError(f"{shown}: {cut(dotted)}: tables nest one level only ([section] then keys).")
            if name not in sections:
                accepted = ", ".join(f"[{s}]" for s in sections)
                raise UsageError(f"{shown}: [{cut(name)}]: unknown section; accepted: {accepted}.")
            yield from _flatten(value, shown, sections, dotted + ".")
        else:
            yield dotted, value


def _checked(declared: Setting, value: Any, shown: str) -> Any:
    if not kind_allows(declared.kind, value):
        kind = KIND_TEXT[declared.kind]
        raise UsageError(f"{shown}: {declared.key}: must be {kind}. Got {show(value)} instead.")
    if declared.kind == "float":
        return float(value)
    return declared.container(value) if declared.kind.endswith("_list") else value
