"""A run whose folder cannot be written (no space left, the folder deleted) ends with one line
naming the folder and how to continue, and resumes once it can be written."""

from __future__ import annotations

import errno
import json
import os
import shutil
from types import SimpleNamespace

import pytest

from prunepilot.search import driver
from prunepilot.search import journal as journal_module
from tests.helpers import FAST_FLAGS, assert_one_line_error, run_cli

pytestmark = pytest.mark.slow


def _search(capsys, out, name: str, trials: int, tiny_weights) -> tuple[int, str, str]:
    """A search of the tiny model without a latency screen (nothing to calibrate)."""
    return run_cli(capsys, "search", "--budget", "1000ms", "--trials", trials, "--out", out, "--name", name,
                   "--model", "tests.zoo:tiny_resnet", "--weights", tiny_weights, "--data",
                   "tests.zoo:small_digits_data", *FAST_FLAGS, "--calibration-samples", "0")  # fmt: skip


def _after_trials(monkeypatch, count: int, then) -> None:
    """Calls ``then()`` once ``count`` trials have been told their outcome."""
    told = []
    tell = driver.tell_outcome

    def counting(*args, **kwargs):
        if len(told) == count:
            then()
        told.append(1)
        return tell(*args, **kwargs)

    monkeypatch.setattr(driver, "tell_outcome", counting)


def test_a_full_disk_is_one_line_and_the_run_resumes_once_there_is_room(
    capsys, tmp_path, tiny_weights, monkeypatch
):
    full = []

    def write_unless_full(handle: int, data: bytes) -> int:
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(handle, data)

    monkeypatch.setattr(journal_module, "os", SimpleNamespace(**{**vars(os), "write": write_unless_full}))
    _after_trials(monkeypatch, 2, lambda: full.append(True))
    code, _, err = _search(capsys, tmp_path, "f", 4, tiny_weights)
    assert code == 1
    assert_one_line_error(
        err, f"Cannot write in '{tmp_path / 'f'}': No space left on device (study.journal)",
        f"continue with: prunepilot search --resume --name f --out {tmp_path}",
    )  # fmt: skip
    journal = (tmp_path / "f" / "study.journal").read_bytes()
    assert journal.endswith(b"\n") and all(json.loads(line) for line in journal.splitlines())
    monkeypatch.undo()  # room again
    code, _, err = run_cli(capsys, "search", "--resume", "--name", "f", "--out", tmp_path, "--quiet")
    assert code == 0, err
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert sum(t["state"] == "COMPLETE" for t in report["trials"]) == 4


def test_a_run_directory_deleted_while_the_search_runs_is_one_line(
    capsys, tmp_path, tiny_weights, monkeypatch
):
    run = tmp_path / "gone"
    _after_trials(monkeypatch, 1, lambda: shutil.rmtree(run))
    code, _, err = _search(capsys, tmp_path, "gone", 3, tiny_weights)
    assert code == 1
    assert_one_line_error(
        err, f"The run directory '{run}' was deleted while the search ran", "start a new run"
    )
