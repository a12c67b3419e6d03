"""Helpers shared by the test modules: the repository root, fast CLI flags, running the command
line in-process and checking its one-line errors. Imported by the tests (``from tests.helpers
import ...``); fixtures stay in ``conftest.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunepilot.cli import main

REPO = Path(__file__).resolve().parent.parent

#: Trials in tests are short: a few fine-tune steps, a few latency repeats.
FAST_FLAGS = [
    "--finetune-steps", "10", "--final-steps", "30", "--bn-batches", "2",
    "--latency-repeats", "3", "--latency-batch", "8", "--quiet", "--workers", "0",
    "--calibration-samples", "8", "--promotion-share", "0",
]  # fmt: skip


def run_cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    """Runs the command line in this process; returns the exit code, stdout and stderr."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    """``err`` is one ``prunepilot: error:`` line, without a traceback, holding every fragment."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("prunepilot: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
