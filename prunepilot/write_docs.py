"""Writes the files made from the job's setting declarations: ``docs/reference.md``'s table,
``examples/digits.toml`` and ``docs/job.schema.json`` (``make docs``, or ``python -m
prunepilot.write_docs``); a test fails while a committed one is stale."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from prunepilot.arguments import build_parser
from prunepilot.settings import settings_of
from prunepilot.settings.docs import example_job_file, reference_table
from prunepilot.settings.schema import job_file_schema
from prunepilot.spec import SECTIONS, JobSpec

__all__ = ["render", "schema_text", "settings_table"]

REPO = Path(__file__).resolve().parents[1]
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


def settings_table() -> str:
    """The reference's table: the job's settings, then the search's flags that are not settings."""
    names = {s.name for s in settings_of(JobSpec)} | {"help", "job"}
    search = build_parser()._subparsers._group_actions[0].choices["search"]  # noqa: SLF001
    actions = search._actions  # noqa: SLF001
    others = [(a.option_strings[0], a.help) for a in actions if a.dest not in names and a.option_strings]
    return reference_table(settings_of(JobSpec), SECTIONS, others)


def schema_text() -> str:
    """``prunepilot schema``'s output, as committed."""
    return json.dumps(job_file_schema(settings_of(JobSpec), SECTIONS), indent=2) + "\n"


def render(root: Path = REPO) -> dict[Path, str]:
    """Each written file's path and the text it should hold now."""
    reference = (root / REFERENCE).read_text()
    start, end = reference.index(BEGIN) + len(BEGIN), reference.index(END)
    return {
        root / REFERENCE: reference[:start] + "\n" + settings_table() + reference[end:],
        root / EXAMPLE: example_job_file(settings_of(JobSpec), SECTIONS, EXAMPLE_HEADER, EXAMPLE_VALUES),
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
