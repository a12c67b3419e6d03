"""Command-line flags from the declarations: one flag per setting, grouped by the job file's
sections, its help the declaration's line and its default."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from prunepilot.settings.declare import Setting

__all__ = ["add_flags", "flag_help", "given_settings"]


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def _str_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


_TYPES = {"int": int, "float": float, "str": str, "int_list": _int_list, "str_list": _str_list}


def flag_help(declared: Setting) -> str:
    """The flag's help: the declaration's line and its default (``(default 24)``)."""
    if declared.is_switch and declared.default is True:
        return f"{declared.help} (on by default; {declared.flag} turns it off)"
    if declared.is_switch or (declared.default is None and declared.default_text is None):
        return declared.help
    return f"{declared.help} ({declared.shown_default()})"


def add_flags(
    parser: argparse.ArgumentParser, settings: Sequence[Setting], sections: Mapping[str, str]
) -> None:
    """Adds a flag for each declared setting that has one, in a help group per job-file section
    (``sections``: section -> title; the top-level section's flags stay in the parser's own group).

    Every flag's default is left out of the parsed namespace, so that only the flags given are there
    (the parser is made with ``argument_default=argparse.SUPPRESS``).
    """
    groups: dict[str, Any] = {}
    for section, title in sections.items():
        if any(s.section == section and s.flag for s in settings):
            groups[section] = parser if section == "" else parser.add_argument_group(title)
    for declared in settings:
        if declared.flag is None:
            continue
        options: dict[str, Any] = {"dest": declared.name, "help": flag_help(declared).replace("%", "%%")}
        if declared.is_switch:
            options["action"] = "store_false" if declared.default is True else "store_true"
        else:
            options["type"] = str if declared.parse else _TYPES[declared.kind]
            choices = declared.check.choices() if declared.check is not None else None
            if choices:
                options["choices"] = choices
        groups[declared.section].add_argument(declared.flag, **options)


def given_settings(args: argparse.Namespace, settings: Sequence[Setting]) -> dict[str, Any]:
    """The settings the flags actually given set (a namespace parsed with suppressed defaults),
    each flag's text turned into its value by the declaration's ``parse`` where it has one (its
    error is the setting's own line, not argparse's)."""
    by_name = {s.name: s for s in settings}
    given = {name: value for name, value in vars(args).items() if name in by_name}
    return {name: (by_name[name].parse or _as_is)(value) for name, value in given.items()}


def _as_is(value: Any) -> Any:
    return value
