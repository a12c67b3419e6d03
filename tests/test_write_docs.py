"""The files written from the declarations are current: the reference's table, the example job
file and the committed schema (``make docs`` writes them)."""

from __future__ import annotations

import pytest

from prunepilot.settings import settings_of
from prunepilot.spec import JobSpec
from prunepilot.write_docs import render, settings_table
from tests.helpers import REPO


@pytest.mark.parametrize("path", sorted(render(REPO)), ids=lambda p: str(p.relative_to(REPO)))
def test_each_written_file_is_current(path):
    assert path.read_text() == render(REPO)[path], f"{path.relative_to(REPO)} is stale: run 'make docs'"


def test_the_reference_has_one_row_per_flag_or_key():
    table = settings_table()
    for declared in settings_of(JobSpec):
        if declared.flag or declared.key:
            assert table.count(f"| `{declared.name}` |") == 1, declared.name
    assert "| `--quiet` |" in table and "| `--debug` |" in table
