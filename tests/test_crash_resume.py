"""A search killed with SIGKILL mid-trial resumes without losing or recomputing trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from prunepilot.cli import main
from tests.conftest import FAST_FLAGS, REPO


def _trials(run):
    storage = JournalStorage(JournalFileBackend(str(run / "study.journal")))
    return optuna.load_study(study_name="prunepilot", storage=storage).get_trials(deepcopy=False)


def test_kill_9_mid_search_then_resume(tmp_path, tiny_weights, capsys):
    run = tmp_path / "k"
    flags = [f for f in FAST_FLAGS]
    flags[flags.index("--finetune-steps") + 1] = "150"  # trials long enough to be killed inside one
    command = [
        sys.executable, "-m", "prunepilot", "search", "--budget", "1000ms", "--trials", "40",
        "--out", str(tmp_path), "--name", "k", "--model", "tests.zoo:tiny_resnet",
        "--weights", str(tiny_weights), "--data", "tests.zoo:small_digits_data", *flags,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if (run / "study.journal").exists():
                trials = _trials(run)
                done = [t for t in trials if t.state.is_finished()]
                last = trials[-1] if trials else None
                if len(done) >= 2 and last.state.name == "RUNNING" and "policy" in last.user_attrs:
                    break
        else:
            raise AssertionError("the search did not reach its third trial in time")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    before = _trials(run)
    completed_before = {t.number: t.user_attrs["result"] for t in before if t.state.name == "COMPLETE"}
    running = [t.number for t in before if t.state.name == "RUNNING"]
    assert len(running) == 1 and len(completed_before) >= 2

    code = main(
        [
            "search",
            "--resume",
            "--name",
            "k",
            "--out",
            str(tmp_path),
            "--trials",
            str(len(completed_before) + 2),
            "--quiet",
        ]
    )
    assert code == 0
    after = _trials(run)
    assert not [t for t in after if t.state.name == "RUNNING"]
    for number, result in completed_before.items():
        assert after[number].user_attrs["result"] == result  # never recomputed
    interrupted = after[running[0]]
    assert interrupted.state.name == "FAIL" and "interrupted" in interrupted.user_attrs["error"]
    rerun = [t for t in after if t.number > running[0] and t.params == interrupted.params]
    assert rerun and rerun[0].state.name == "COMPLETE"
    report = json.loads((run / "report.json").read_text())
    assert report["budget_met"] is True
    assert "Recovered 1 trial" in capsys.readouterr().out
