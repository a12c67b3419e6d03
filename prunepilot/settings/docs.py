"""The settings reference's table, the example job file and the job-file schema, written from the
declarations (``make docs``, or ``python -m prunepilot.settings.docs``); a test checks that the
committed files are current."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from prunepilot.arguments import build_parser
from prunepilot.settings.declare import KIND_TEXT, Setting, settings_of
from prunepilot.settings.schema import job_file_schema
from prunepilot.spec import SECTIONS, JobSpec

__all__ = ["REFERENCE", "example_job_file", "reference_table", "render", "schema_text"]

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path("docs/reference.md")
EXAMPLE = Path("examples/digits.toml")
SCHEMA = Path("docs/job.schema.json")
BEGIN = "<!-- the table below is written from the settings' declarations (make docs): edit those, not it -->"
END = "<!-- end of the written table -->"
#: What the example job sets other than the defaults.
EXAMPLE_VALUES = {"budget": "2x", "trials": 40}
EXAMPLE_HEADER = f"""#:schema ../{SCHEMA}
# A prunepilot job: the built-in digits task with a latency budget of half the baseline's.
#   prunepilot validate examples/digits.toml      # checks everything in seconds
#   prunepilot search examples/digits.toml        # runs it; flags given override this file
# Every key is optional except the budget; the values shown are the defaults unless noted, and the
# keys commented out show an example value. What each key does: docs/reference.md (or your editor,
# through the schema named on the first line). Written from the settings' declarations (make docs).
"""


def _ordered() -> list[Setting]:
    """The settings in the job file's order: section by section, each in declaration order."""
    declared = [s for s in settings_of(JobSpec) if s.flag or s.key]
    return [s for section in SECTIONS for s in declared if s.section == section]


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


def reference_table() -> str:
    """The reference's table: one row per setting, then the flags that are not settings."""
    rows = ["| flag | job file key | `JobSpec` field | default | accepted | meaning |", "|---" * 6 + "|"]
    for s in _ordered():
        meaning = s.help + (f"; {s.note}" if s.note else "")
        accepted = s.check.accepted if s.check is not None else KIND_TEXT[s.kind]
        cells = [_code(s.flag) if s.flag else "—", _code(s.key) if s.key else "—", _code(s.name),
                 _default_cell(s), accepted, meaning]  # fmt: skip
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    names = {s.name for s in settings_of(JobSpec)} | {"help", "job"}
    search = build_parser()._subparsers._group_actions[0].choices["search"]  # noqa: SLF001
    for action in search._actions:  # noqa: SLF001
        if action.dest not in names and action.option_strings:
            rows.append(f"| {_code(action.option_strings[0])} | — | — | off | — | {action.help} |")
    return "\n".join(rows) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def example_job_file() -> str:
    """The example job file: every key, with its default (or, commented out, an example value)."""
    lines = [EXAMPLE_HEADER.rstrip("\n")]
    for section, title in SECTIONS.items():
        members = [s for s in _ordered() if s.key and s.section == section]
        if not members:
            continue
        lines += ["", f"# {title}"] + ([] if section == "" else [f"[{section}]"])
        for s in members:
            key = s.key.split(".", 1)[-1]
            if s.name in EXAMPLE_VALUES:
                text, comment = f"{key} = {_toml(EXAMPLE_VALUES[s.name])}", s.shown_default()
            elif s.default is None:
                text = f"# {key} = {_toml(s.example)}"
                comment = s.shown_default() if s.default_text else ""
            else:
                text, comment = f"{key} = {_toml(s.default)}", ""
            lines.append(f"{text:<36} # {comment}" if comment else text)
    return "\n".join(lines) + "\n"


def schema_text() -> str:
    """``prunepilot schema``'s output, as committed."""
    return json.dumps(job_file_schema(settings_of(JobSpec), SECTIONS), indent=2) + "\n"


def render(root: Path = REPO) -> dict[Path, str]:
    """Each written file's path and the text it should hold now."""
    reference = (root / REFERENCE).read_text()
    start, end = reference.index(BEGIN) + len(BEGIN), reference.index(END)
    return {
        root / REFERENCE: reference[:start] + "\n" + reference_table() + reference[end:],
        root / EXAMPLE: example_job_file(),
        root / SCHEMA: schema_text(),
    }


def main() -> int:
    """Writes the files that changed; prints their paths."""
    for path, text in render().items():
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
