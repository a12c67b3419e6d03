"""A run folder is data: one made elsewhere that names code is not imported by report, export,
resume or load_plan until the user says --trust-run; a run made here needs no flag, moved or not,
but a plan in it naming other code than its job does."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from prunepilot.errors import UsageError
from prunepilot.export import load_plan
from tests.helpers import assert_one_line_error, run_cli

MARKER = '''
from pathlib import Path
Path(__file__).with_name("imported.txt").write_text("the run's code ran")

def factory():
    from tests.zoo import tiny_resnet
    return tiny_resnet()
'''


@pytest.fixture()
def received(capsys, tmp_path, tiny_flags, monkeypatch):
    """A run made here, then changed as a hostile sender would: its model names a module that marks
    its own import."""
    flags = ["--budget", "1GFLOPs", "--trials", "1", "--out", tmp_path / "made", "--name", "r", *tiny_flags]
    code, _, err = run_cli(capsys, "search", *flags)
    assert code == 0, err
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "marker_factory.py").write_text(MARKER)
    monkeypatch.syspath_prepend(str(code_dir))
    monkeypatch.delitem(sys.modules, "marker_factory", raising=False)
    run = shutil.copytree(tmp_path / "made" / "r", tmp_path / "inbox" / "r")
    for name in ("config.json", "plan.json"):
        saved = json.loads((run / name).read_text())
        key = "model" if name == "config.json" else "factory"
        (run / name).write_text(json.dumps({**saved, key: "marker_factory:factory"}))
    return run, code_dir / "imported.txt"


def test_a_run_made_elsewhere_is_read_only_with_trust_run(capsys, received):
    run, marker = received
    for command in (["report", run], ["export", run, "--trial", "0", "--format", "plan"],
                    ["search", "--resume", "--name", run.name, "--out", run.parent]):  # fmt: skip
        code, _, err = run_cli(capsys, *command)
        assert code == 2
        assert_one_line_error(err, "not made on this machine", "marker_factory:factory", "add --trust-run")
    with pytest.raises(UsageError, match=r"base_model=\.\.\. or trust=True"):
        load_plan(run)
    assert not marker.exists()  # nothing it names was imported
    code, _, err = run_cli(capsys, "report", run, "--trust-run")
    assert code == 0, err
    assert marker.exists()
    marker.unlink()
    code, _, err = run_cli(capsys, "report", run)  # trusted once: read without the flag
    assert code == 0, err


def test_a_run_made_here_is_read_without_a_flag_even_moved_but_not_a_plan_naming_other_code(
    capsys, received
):
    run, marker = received
    made = run.parent.parent / "made" / "r"
    assert run_cli(capsys, "report", made)[0] == 0
    assert load_plan(made) is not None
    moved = shutil.move(made, run.parent.parent / "moved")
    assert run_cli(capsys, "report", moved)[0] == 0
    plan = json.loads((moved / "plan.json").read_text())
    (moved / "plan.json").write_text(json.dumps({**plan, "factory": "marker_factory:factory"}))
    with pytest.raises(UsageError, match="marker_factory:factory"):
        load_plan(moved)
    assert not marker.exists()
