"""The settings reference's table and an example job file, written from declarations (the schema is
:mod:`~prunepilot.settings.schema`'s)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from prunepilot.settings.declare import KIND_TEXT, Setting

__all__ = ["example_job_file", "in_file_order", "reference_table"]


def in_file_order(settings: Sequence[Setting], sections: Mapping[str, str]) -> list[Setting]:
    """The settings with a flag or key in the job file's order: section by section, each in
    declaration order."""
    declared = [s for s in settings if s.flag or s.key]
    return [s for section in sections for s in declared if s.section == section]


def _code(text: str) -> str:
    return f"`{text}`"


def _default_cell(declared: Setting) -> str:
    if declared.default_text is not None:
        return declared.default_text
    if declared.kind == "bool":
        return "on (`true`)" if declared.default else "off"
    if isinstance(declared.default, str):
        return _code(declared.default)
    return str(declared.default)


def _accepted_cell(declared: Setting) -> str:
    accepted = declared.check.accepted if declared.check is not None else KIND_TEXT[declared.kind]
    return accepted + ("; from Python, a callable too" if declared.takes_callable else "")


def reference_table(
    settings: Sequence[Setting], sections: Mapping[str, str], other_flags: Sequence[tuple[str, str]] = ()
) -> str:
    """A Markdown table: one row per setting, then ``other_flags`` ((flag, help) of flags that are
    not settings, off by default)."""
    rows = ["| flag | job file key | `JobSpec` field | default | accepted | meaning |", "|---" * 6 + "|"]
    for s in in_file_order(settings, sections):
        meaning = s.help + (f"; {s.note}" if s.note else "")
        cells = [_code(s.flag) if s.flag else "—", _code(s.key) if s.key else "—", _code(s.name),
                 _default_cell(s), _accepted_cell(s), meaning]  # fmt: skip
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    rows += [f"| {_code(flag)} | — | — | off | — | {text} |" for flag, text in other_flags]
    return "\n".join(rows) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def example_job_file(
    settings: Sequence[Setting], sections: Mapping[str, str], header: str, values: Mapping[str, Any]
) -> str:
    """A job file holding every key: ``values`` where given, else its default (or, commented out,
    its example value); each section under its title."""
    lines = [header.rstrip("\n")]
    ordered = in_file_order(settings, sections)
    for section, title in sections.items():
        members = [s for s in ordered if s.key and s.section == section]
        if not members:
            continue
        lines += ["", f"# {title}"] + ([] if section == "" else [f"[{section}]"])
        for s in members:
            key = s.key.split(".", 1)[-1]
            if s.name in values:
                text, comment = f"{key} = {_toml(values[s.name])}", s.shown_default()
            elif s.default is None:
                text = f"# {key} = {_toml(s.example)}"
                comment = s.shown_default() if s.default_text else ""
            else:
                text, comment = f"{key} = {_toml(s.default)}", ""
            lines.append(f"{text:<36} # {comment}" if comment else text)
    return "\n".join(lines) + "\n"
