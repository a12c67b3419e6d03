"""A search killed with SIGKILL mid-trial resumes without losing or recomputing trials."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import onnxruntime
import optuna
import pytest
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from prunepilot.cli import main
from prunepilot.export import load_plan, load_torchscript
from prunepilot.rundir import LOCK_FILE, TEMPORARY_PREFIX
from tests.helpers import FAST_FLAGS, REPO
from tests.zoo import small_digits_data

#: Each test runs searches in processes of their own and kills them: tens of seconds.
pytestmark = pytest.mark.slow


def _trials(run):
    storage = JournalStorage(JournalFileBackend(str(run / "study.journal")))
    return optuna.load_study(study_name="prunepilot", storage=storage).get_trials(deepcopy=False)


def _start_search(tmp_path, name: str, weights, trials: int, **flag_values: str) -> subprocess.Popen:
    """Starts ``prunepilot search`` on the tiny model in a process of its own (stdout piped,
    unbuffered); ``flag_values`` replace FAST_FLAGS values (``finetune_steps="150"``)."""
    flags = list(FAST_FLAGS)
    for flag, value in flag_values.items():
        flags[flags.index("--" + flag.replace("_", "-")) + 1] = value
    command = [
        sys.executable, "-m", "prunepilot", "search", "--budget", "1000ms", "--trials", str(trials),
        "--out", str(tmp_path), "--name", name, "--model", "tests.zoo:tiny_resnet",
        "--weights", str(weights), "--data", "tests.zoo:small_digits_data", *flags,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_9_after(process: subprocess.Popen, marker: bytes, delay: float) -> None:
    """Sends SIGKILL ``delay`` seconds after ``process`` prints a line holding ``marker``."""
    try:
        for line in process.stdout:
            if marker in line:
                time.sleep(delay)
                break
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()


def test_kill_9_mid_search_then_resume(tmp_path, tiny_weights, capsys):
    run = tmp_path / "k"
    # Trials long enough to be killed inside one.
    process = _start_search(tmp_path, "k", tiny_weights, 40, finetune_steps="150")
    try:
        deadline = time.monotonic() + 600  # a busy machine is slow to get there
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
    policy = interrupted.user_attrs["policy"]
    rerun = [t for t in after if t.number > running[0] and t.user_attrs.get("policy") == policy]
    assert rerun and rerun[0].state.name == "COMPLETE"
    assert set(rerun[0].params) == set(after[0].params)  # recorded whole, whenever the kill came
    report = json.loads((run / "report.json").read_text())
    assert report["budget_met"] is True
    # The resumed screen learnt from the trials measured before the kill as well as from its own.
    assert report["latency_predictor"]["observed"] == len([t for t in after if t.state.name == "COMPLETE"])
    assert "Recovered 1 trial" in capsys.readouterr().out


def test_kill_9_during_the_final_fine_tune_then_resume_recomputes_no_trial(tmp_path, tiny_weights):
    run = tmp_path / "f"
    # A final fine-tune long enough to be killed in (a few seconds per candidate); the driver logs
    # it as it starts. The resumed run keeps the saved job, so it runs the same final fine-tunes.
    process = _start_search(tmp_path, "f", tiny_weights, 3, final_steps="600")
    _kill_9_after(process, b"Final fine-tune of trial", 1.0)
    before = {t.number: t.user_attrs["result"] for t in _trials(run) if t.state.name == "COMPLETE"}
    assert len(before) == 3 and not (run / "report.json").exists()
    # No half-written file: temporary files start with a dot (the lock file is the run's own).
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != LOCK_FILE]
    code = main(["search", "--resume", "--name", "f", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    after = _trials(run)
    assert len(after) == 3  # no trial was run again
    assert {t.number: t.user_attrs["result"] for t in after} == before
    for name in ("report.json", "report.html", "model.ts.pt", "model.onnx", "plan.json", "weights.pt"):
        assert (run / name).is_file(), name


def test_a_second_search_on_a_run_in_use_refuses_with_one_line(tmp_path, tiny_weights, capsys):
    process = _start_search(tmp_path, "busy", tiny_weights, 40, finetune_steps="150")
    try:
        deadline = time.monotonic() + 600  # a busy machine is slow to get there
        while not (tmp_path / "busy" / "study.journal").exists():
            assert time.monotonic() < deadline, "the first search did not start in time"
            time.sleep(0.2)
        code = main(["search", "--resume", "--name", "busy", "--out", str(tmp_path), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "in use by another prunepilot process" in lines[0]
        assert process.poll() is None  # the first search goes on
    finally:
        process.kill()
        process.wait(timeout=30)


def test_kill_9_during_the_export_then_resume_leaves_every_artefact_whole(tmp_path, tiny_weights):
    run = tmp_path / "e"
    # Killed inside the TorchScript or ONNX export; the driver logs the export as it starts.
    process = _start_search(tmp_path, "e", tiny_weights, 2)
    _kill_9_after(process, b"Exporting trial", 0.5)
    before = {t.number: t.user_attrs["result"] for t in _trials(run) if t.state.name == "COMPLETE"}
    assert len(before) == 2 and not (run / "report.json").exists()
    # A stray temporary (a writer killed mid-write) is cleared when the run is opened again.
    (run / f"{TEMPORARY_PREFIX}model.onnx.abc").write_bytes(b"half")
    assert main(["search", "--resume", "--name", "e", "--out", str(tmp_path), "--quiet"]) == 0
    assert {t.number: t.user_attrs["result"] for t in _trials(run)} == before  # no trial re-run
    assert not list(run.rglob(f"{TEMPORARY_PREFIX}*"))
    report = json.loads((run / "report.json").read_text())
    inputs = torch.stack([small_digits_data()[2][i][0] for i in range(8)])
    expected = load_plan(run)(inputs)
    assert torch.allclose(load_torchscript(run / "model.ts.pt")(inputs), expected, atol=1e-5)
    session = onnxruntime.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})[0]
    assert abs(onnx_out - expected.detach().numpy()).max() <= 1e-4
    assert report["final"]["export"]["onnx_max_abs_diff"] <= 1e-4


def test_ctrl_c_in_the_final_fine_tune_says_what_is_saved_and_the_quoted_command_resumes(
    tmp_path, tiny_weights, capsys, monkeypatch
):
    from prunepilot.pipeline import jobs

    def interrupted(*args, **kwargs):
        with args[-1].phase("final"):  # the clock: Ctrl-C during the final fine-tune
            raise KeyboardInterrupt

    out, name = tmp_path / "runs dir", "nightly run"
    flags = ["--model", "tests.zoo:tiny_resnet", "--weights", str(tiny_weights), "--data",
             "tests.zoo:small_digits_data", *FAST_FLAGS, "--calibration-samples", "0"]  # fmt: skip
    with monkeypatch.context() as patched:
        patched.setattr(jobs, "finish_stage", interrupted)
        code = main(["search", "--budget", "1000ms", "--trials", "2", "--out", str(out), "--name", name,
                     *flags])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 130 and len(err.splitlines()) == 1, err
    assert "interrupted in the final phase; 2 complete trials are saved in" in err
    command = err.split("continue with: ", 1)[1]
    assert command == f"prunepilot search --resume --name 'nightly run' --out '{out}'"
    argv = shlex.split(command)[1:]
    assert main(argv) == 0  # the pasted command finishes the run
    report = json.loads((out / name / "report.json").read_text())
    assert sum(t["state"] == "COMPLETE" for t in report["trials"]) == 2


def test_sigterm_mid_search_says_what_is_saved_and_the_run_resumes(tmp_path, tiny_weights):
    process = _start_search(tmp_path, "t", tiny_weights, 40, finetune_steps="150")
    try:
        for line in process.stdout:  # the trials have begun
            if b"Trials run" in line:
                break
        time.sleep(3)
        process.send_signal(signal.SIGTERM)  # a scheduler's stop
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    err = err.decode()
    assert process.returncode == 130, err
    assert "interrupted" in err and "continue with: prunepilot search --resume --name t" in err
    assert not list(tmp_path.glob("t/*.holder")) or not (tmp_path / "t" / "study.journal.holder").read_text()
    code = main(["search", "--resume", "--name", "t", "--out", str(tmp_path), "--trials", "2", "--quiet"])
    assert code == 0
