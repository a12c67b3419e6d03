"""A run's study journal survives a torn or damaged record: a torn end is dropped, damage elsewhere
is one line pointing to ``prunepilot repair``, which keeps every readable record."""

from __future__ import annotations

import errno
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from prunepilot.cli import main
from prunepilot.search import journal as journal_module
from prunepilot.search import journal_lock
from prunepilot.search.journal import WholeRecordBackend
from tests.helpers import FAST_FLAGS, assert_one_line_error, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_weights) -> Path:
    out = str(tmp_path_factory.mktemp("journal"))
    flags = ["--model", "tests.zoo:tiny_resnet", "--weights", str(tiny_weights),
             "--data", "tests.zoo:small_digits_data", *FAST_FLAGS, "--calibration-samples", "0"]  # fmt: skip
    searched = main(["search", "--budget", "1000ms", "--trials", "4", "--out", out, "--name", "r", *flags])
    assert searched == 0
    return Path(out) / "r"


@pytest.fixture()
def run(finished_run, tmp_path) -> Path:
    """A copy of the finished run, to damage."""
    return Path(shutil.copytree(finished_run, tmp_path / finished_run.name))


def _completed(run: Path) -> dict[int, float]:
    """Completed trial number -> validation score, as report.json gives them."""
    trials = json.loads((run / "report.json").read_text())["trials"]
    return {t["number"]: t["result"]["accuracy"] for t in trials if t["state"] == "COMPLETE"}


def _records(run: Path) -> list[bytes]:
    return (run / "study.journal").read_bytes().splitlines(keepends=True)


def _index_of(run: Path, wanted) -> int:
    """The index of the first record for which ``wanted(record)`` holds."""
    return next(i for i, line in enumerate(_records(run)) if wanted(json.loads(line)))


@pytest.mark.parametrize("tear", ["cut mid-record", "garbage line"])
def test_a_torn_end_is_dropped_once_and_no_completed_trial_is_lost(capsys, run, tear):
    before = _completed(run)
    journal = run / "study.journal"
    whole = journal.read_bytes()
    last = _records(run)[-1]
    tail = last[: len(last) // 2] if tear == "cut mid-record" else b"}{not a record\n"
    journal.write_bytes(whole[: -len(last)] + tail if tear == "cut mid-record" else whole + tail)
    code, _, err = run_cli(capsys, "report", run)
    assert code == 0, err
    assert err.count("warning") == 1 and "dropped 1 torn record(s) at its end" in err
    assert _completed(run) == before
    assert (run / "study.journal.torn").read_bytes().rstrip(b"\n") == tail.rstrip(b"\n")
    code, _, err = run_cli(capsys, "report", run)  # dropped once: read again without a word
    assert code == 0 and "torn" not in err
    # The run resumes on it: two more trials, the earlier ones as they were.
    resume = ["search", "--resume", "--name", run.name, "--out", run.parent, "--quiet"]
    code, _, err = run_cli(capsys, *resume, "--trials", "6")
    assert code == 0, err
    after = _completed(run)
    assert len(after) == 6 and all(after[n] == score for n, score in before.items())


@pytest.mark.parametrize("where", [0.35, 0.7, 0.95, "before the chosen trial's result"])
def test_a_journal_cut_anywhere_is_read_and_resumed_keeping_every_trial_completed_before_the_cut(
    capsys, run, where
):
    scores = _completed(run)
    whole = (run / "study.journal").read_bytes()
    if isinstance(where, float):
        cut = int(len(whole) * where)
    else:  # the report's chosen trial then exists, unfinished
        chosen = json.loads((run / "report.json").read_text())["chosen"]["number"]
        index = _index_of(run, lambda r: r.get("trial_id") == chosen and "result" in r.get("user_attr", {}))
        cut = sum(len(line) for line in _records(run)[:index])
    ends = itertools.accumulate(len(line) for line in _records(run))
    before = {  # trials whose completion was written whole before the cut (one study: id = number)
        record["trial_id"] for record, end in zip(map(json.loads, _records(run)), ends)
        if end <= cut and record["op_code"] == 6 and record["state"] == 1
    }  # fmt: skip
    assert len(before) < len(scores)
    (run / "study.journal").write_bytes(whole[:cut])
    code, _, err = run_cli(capsys, "report", run)  # the chosen trial may be gone: then exit 3
    assert code in (0, 3) and "error" not in err, err
    assert {n: s for n, s in _completed(run).items() if n in before} == {n: scores[n] for n in before}
    if before:
        code, _, err = run_cli(capsys, "export", run, "--trial", min(before), "--format", "plan", "--quiet")
        assert code == 0, err
    code, _, err = run_cli(capsys, "search", "--resume", "--name", run.name, "--out", run.parent, "--quiet")
    assert code == 0, err
    after = _completed(run)
    assert len(after) == len(scores) and all(after[n] == scores[n] for n in before)


def test_a_renamed_run_folder_keeps_its_trials(capsys, run):
    scores = _completed(run)
    renamed = run.rename(run.with_name("renamed"))
    code, _, err = run_cli(capsys, "report", renamed)
    assert code == 0, err
    assert _completed(renamed) == scores
    code, _, err = run_cli(capsys, "export", renamed, "--trial", min(scores), "--format", "plan", "--quiet")
    assert code == 0, err


def test_damage_in_the_middle_is_one_line_and_repair_keeps_every_readable_record(capsys, run):
    before = _completed(run)
    lines = _records(run)
    middle = len(lines) // 2
    damaged = b"".join(lines[:middle] + [b"\x00\x00 not a record\n"] + lines[middle:])
    (run / "study.journal").write_bytes(damaged)
    for command in (["report", run], ["export", run, "--trial", min(before)],
                    ["search", "--resume", "--name", run.name, "--out", run.parent]):  # fmt: skip
        code, _, err = run_cli(capsys, *command)
        assert code == 2
        assert_one_line_error(err, f"Line {middle + 1} of the study journal", f"prunepilot repair {run}")
    assert (run / "study.journal").read_bytes() == damaged  # nothing changed by reading it
    code, out, _ = run_cli(capsys, "repair", run)
    assert code == 0 and "dropped 1 unreadable line(s)" in out and "--resume" in out
    assert (run / "study.journal.bak").read_bytes() == damaged
    assert run_cli(capsys, "report", run)[0] == 0
    assert _completed(run) == before


def test_a_record_written_onto_a_torn_trial_creation_is_salvaged_and_numbers_are_kept(capsys, run):
    """The damage a full disk left before appends were whole: a trial's creation record cut, the
    next record appended on the same line."""
    before = _completed(run)
    lines = _records(run)
    second = [i for i, line in enumerate(lines) if json.loads(line)["op_code"] == 4][1]
    lines[second : second + 2] = [lines[second][: len(lines[second]) // 2] + lines[second + 1]]
    (run / "study.journal").write_bytes(b"".join(lines))
    assert run_cli(capsys, "report", run)[0] == 2
    code, out, _ = run_cli(capsys, "repair", run)
    assert code == 0 and "salvaged 1 record(s)" in out and "1 trial(s) whose creation was lost" in out
    assert run_cli(capsys, "report", run)[0] == 0
    # Every later trial keeps its number and score; the one whose creation was cut keeps its number.
    after = _completed(run)
    assert set(after) <= set(before) and all(after[n] == before[n] for n in after)
    assert len(after) >= len(before) - 1


def test_a_completed_trial_that_lost_its_result_is_named_and_runs_again_after_repair(capsys, run):
    before = _completed(run)
    number, total = max(before), len(json.loads((run / "report.json").read_text())["trials"])
    lines = _records(run)  # one study: trial ids are the trials' numbers
    del lines[_index_of(run, lambda r: r.get("trial_id") == number and "result" in r.get("user_attr", {}))]
    (run / "study.journal").write_bytes(b"".join(lines))
    code, _, err = run_cli(capsys, "report", run)
    assert code == 2
    assert_one_line_error(err, f"trial {number}, complete without its result record", "prunepilot repair")
    code, out, _ = run_cli(capsys, "repair", run)
    assert code == 0 and "1 completed trial(s) without their result left to run again" in out
    code, _, err = run_cli(capsys, "search", "--resume", "--name", run.name, "--out", run.parent, "--quiet")
    assert code == 0, err
    # Its policy ran again as a new trial; every other trial is as it was.
    after = _completed(run)
    assert set(after) == (set(before) - {number}) | {total}
    assert all(after[n] == before[n] for n in before if n != number)


def test_repair_takes_a_journal_shared_by_a_studys_runs_as_the_damage_line_says(capsys, run, tmp_path):
    lines = _records(run)
    shared = tmp_path / "studies.journal"
    shared.write_bytes(b"".join([*lines[:3], b"not a record\n", *lines[3:]]))
    code, out, _ = run_cli(capsys, "repair", shared)
    assert code == 0 and "dropped 1 unreadable line(s)" in out
    assert shared.read_bytes() == b"".join(lines)


def test_repair_of_a_whole_journal_changes_nothing(capsys, run):
    whole = (run / "study.journal").read_bytes()
    code, out, _ = run_cli(capsys, "repair", run)
    assert code == 0 and "nothing to repair" in out
    assert (run / "study.journal").read_bytes() == whole and not (run / "study.journal.bak").exists()


def test_an_append_that_fails_for_space_leaves_no_half_record(tmp_path, monkeypatch):
    path = tmp_path / "study.journal"
    backend = WholeRecordBackend(str(path))
    backend.append_logs([{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}])
    whole = path.read_bytes()

    def write_part_then_fail(handle: int, data: bytes) -> int:
        if len(data) < 100:  # the rest, after a part went down
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(handle, data[:10])

    monkeypatch.setattr(journal_module, "os", SimpleNamespace(**{**vars(os), "write": write_part_then_fail}))
    with pytest.raises(OSError, match="No space left"):
        backend.append_logs([{"op_code": 2, "worker_id": "w", "study_id": 0, "user_attr": {"k": "v" * 100}}])
    assert path.read_bytes() == whole


def test_a_journal_that_is_a_link_is_neither_read_nor_repaired_and_its_target_is_untouched(
    capsys, run, tmp_path
):
    target = tmp_path / "elsewhere.journal"
    shutil.move(run / "study.journal", target)
    whole = target.read_bytes()
    (run / "study.journal").symlink_to(target)
    for command in (["report", run], ["repair", run]):
        code, _, err = run_cli(capsys, *command)
        assert code == 2
        assert_one_line_error(err, "is a symbolic link", "writes no file through a link")
    assert target.read_bytes() == whole and (run / "study.journal").is_symlink()
    assert not (run / "study.journal.bak").exists() and not (run / "study.journal.torn").exists()


def test_a_storage_path_holding_something_else_is_refused_before_anything_is_written(capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("meeting notes, not a journal\n")
    flags = ["--storage", notes, "--out", tmp_path / "runs", "--budget", "2x", "--trials", "1", *FAST_FLAGS]
    for command in (["--dry-run"], []):
        code, _, err = run_cli(capsys, "search", *command, *flags)
        assert code == 2
        assert_one_line_error(err, f"{notes} is not a study journal", "sqlite:///studies.db")
    assert notes.read_text() == "meeting notes, not a journal\n"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "notes.txt.torn").exists()


def test_reading_a_run_whose_journal_was_emptied_writes_nothing_and_keeps_the_report(capsys, run):
    report = (run / "report.json").read_bytes()
    (run / "study.journal").write_bytes(b"")
    for command in (["report", run], ["export", run, "--trial", "0"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 2
        assert_one_line_error(err, "holds no study 'prunepilot'", "the run's last report stays")
    assert (run / "study.journal").read_bytes() == b"" and (run / "report.json").read_bytes() == report


def test_a_report_from_a_journal_that_lost_trials_keeps_the_fuller_one_beside_it(capsys, run):
    report = (run / "report.json").read_bytes()
    whole = (run / "study.journal").read_bytes()
    (run / "study.journal").write_bytes(whole[: len(whole) // 3])
    code, _, err = run_cli(capsys, "report", run)
    assert code in (0, 3)
    assert "warning: the study holds" in err and "kept as report.json.prev" in err
    assert (run / "report.json.prev").read_bytes() == report
    assert len(_completed(run)) < len(json.loads(report)["trials"])


def _hold_lock(journal: Path, then: str) -> subprocess.Popen:
    """A process that takes the journal's lock, says so, then sleeps (to be killed or left)."""
    code = (
        "import sys, time; from prunepilot.search.journal_lock import HolderLock; "
        f"HolderLock({str(journal)!r}).acquire(); print('held', flush=True); {then}"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_lock_left_by_a_killed_process_is_taken_over_at_once_with_one_warning(capsys, run, monkeypatch):
    monkeypatch.chdir(run.parent)  # a relative path to the run, as a relative --out gives
    (run / "study.journal.lock").symlink_to("study.journal")  # the old lock a kill left behind
    holder = _hold_lock(run / "study.journal", "time.sleep(600)")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    start = time.monotonic()
    code, _, err = run_cli(capsys, "report", run.name)
    assert code in (0, 3) and time.monotonic() - start < 60
    assert err.count("warning") == 1 and f"the lock left by pid {holder.pid}" in err and "(gone)" in err


def test_a_lock_held_by_a_live_process_ends_the_command_naming_it(capsys, run, monkeypatch):
    monkeypatch.setattr(journal_lock, "WAIT_SECONDS", 1.0)
    holder = _hold_lock(run / "study.journal", "time.sleep(600)")
    try:
        code, _, err = run_cli(capsys, "report", run)
    finally:
        holder.kill()
        holder.wait()
    assert code == 2
    assert_one_line_error(err, "has been locked for over 1 s", f"pid {holder.pid} on", "stop it")


def test_a_storage_named_by_the_run_is_never_created_or_written_by_reading_it(capsys, run, tmp_path):
    decoy = tmp_path / "decoy.rc"
    decoy.write_text("export PATH=/usr/bin\n")
    config = json.loads((run / "config.json").read_text())
    cases = ((tmp_path / "absent" / "x.journal", "is missing"), (decoy, "is not a study journal"))
    for storage, said in cases:
        (run / "config.json").write_text(json.dumps({**config, "storage": str(storage)}))
        code, _, err = run_cli(capsys, "report", run, "--trust-run")
        assert code == 2
        assert_one_line_error(err, said)
    assert not (tmp_path / "absent").exists() and decoy.read_text() == "export PATH=/usr/bin\n"
