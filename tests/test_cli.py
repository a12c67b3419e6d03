"""The command line: exit codes, artefacts, and one clear line for each kind of bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunepilot import Policy, apply_policy, discover_groups
from prunepilot.cli import build_parser, main
from prunepilot.evaluators import count_flops
from prunepilot.export import load_torchscript
from prunepilot.spec import JobSpec
from tests.helpers import FAST_FLAGS, REPO, assert_one_line_error, run_cli
from tests.zoo import small_digits_data


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> tuple[int, Path, str]:
    """One short search of the built-in task with a FLOPs budget (deterministic to meet)."""
    out = tmp_path_factory.mktemp("runs")
    code = main(
        ["search", "--budget", "3MFLOPs", "--trials", "4", "--out", str(out), "--name", "d", *FAST_FLAGS]
    )
    return code, out / "d", ""


@pytest.mark.slow
def test_default_task_search_meets_a_flops_budget_and_exits_0(default_run):
    code, run, _ = default_run
    assert code == 0
    for name in (
        "config.json",
        "baseline.json",
        "study.journal",
        "model.ts.pt",
        "policy.json",
        "report.json",
        "report.md",
        "pareto.png",
        "report.html",
        "model.onnx",
        "plan.json",
        "weights.pt",
    ):
        assert (run / name).is_file(), name
    report = json.loads((run / "report.json").read_text())
    assert report["schema"] == "prunepilot.report/2"
    assert report["budget_met"] is True
    assert len(report["trials"]) == 4
    assert report["chosen"]["feasible"] is True
    assert report["final"]["flops"] <= 3e6 < report["baseline"]["flops"]
    assert report["chosen"]["number"] in report["front"]
    # FLOPs are screened exactly before training: no trained trial is over budget.
    assert report["screening"]["trained"] == 4
    assert report["screening"]["trained_over_budget"] == 0
    assert all(t["feasible"] for t in report["trials"] if t["state"] == "COMPLETE")
    assert (run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (run / "report.md").read_text()
    assert "Baseline against chosen model" in summary
    steps = report["trial_settings"]["finetune_steps"]
    assert f"of each trial after BatchNorm recalibration and {steps} fine-tune steps" in summary
    page = (run / "report.html").read_text()
    assert "data:image/png;base64," in page and "<link" not in page and "src='http" not in page
    assert f"Chosen: trial {report['chosen']['number']}" in page and "model.onnx" in page


@pytest.mark.slow
def test_the_best_front_points_get_the_final_fine_tune_and_the_best_validation_wins(default_run):
    _, run, _ = default_run
    report = json.loads((run / "report.json").read_text())
    candidates = report["final"]["candidates"]
    assert len(candidates) >= 2 and all(c["number"] in report["front"] for c in candidates)
    # More than three only when none of the three best met the budget on re-measurement.
    assert len(candidates) <= 3 or not any(c["budget_met"] for c in candidates[:3])
    # The candidates are the front's best by trial score, and the winner is the best after the
    # final fine-tune (on validation), whatever its trial score's rank.
    by_number = {t["number"]: t for t in report["trials"]}
    scores = [by_number[c["number"]]["result"]["accuracy"] for c in candidates]
    assert scores == sorted(scores, reverse=True)
    fitting = [c for c in candidates if c["budget_met"]]
    best = max(c["val_accuracy"] for c in fitting)
    assert report["final"]["val_accuracy"] == best
    assert report["chosen"]["number"] == next(c["number"] for c in fitting if c["val_accuracy"] == best)


@pytest.mark.slow
def test_exported_torchscript_reloads_with_identical_outputs(default_run):
    _, run, _ = default_run
    from prunepilot.tasks import digits_task

    task = digits_task(progress=False)
    policy = Policy.load(run / "policy.json")
    scripted = load_torchscript(run / "model.ts.pt")
    inputs = torch.stack([task.test[i][0] for i in range(32)])
    # The export is the pruned architecture: same shapes as re-applying the policy.
    rebuilt = apply_policy(task.model, policy, task.input_shape).model
    assert scripted(inputs).shape == rebuilt(inputs).shape == (32, 10)
    report = json.loads((run / "report.json").read_text())
    assert report["final"]["export"]["torchscript_max_abs_diff"] == 0.0
    reloaded_twice = load_torchscript(run / "model.ts.pt")
    assert torch.equal(scripted(inputs), reloaded_twice(inputs))


@pytest.mark.slow
def test_the_plan_export_recreates_the_model_from_its_class_and_a_state_dict(default_run):
    _, run, _ = default_run
    from prunepilot.export import load_plan
    from prunepilot.tasks import digits_task

    plan = json.loads((run / "plan.json").read_text())
    assert plan["schema"] == "prunepilot.plan/1" and plan["task"] == "digits"
    assert any(plan["removed"].values())  # channels were removed
    state = torch.load(run / "weights.pt", weights_only=True)  # plain tensors, no modules
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    model = load_plan(run)
    inputs = torch.stack([digits_task(progress=False).test[i][0] for i in range(32)])
    with torch.no_grad():
        assert torch.allclose(model(inputs), load_torchscript(run / "model.ts.pt")(inputs), atol=1e-5)
    report = json.loads((run / "report.json").read_text())
    assert report["final"]["export"]["plan_max_abs_diff"] <= 1e-5


@pytest.mark.slow
def test_the_onnx_export_runs_in_onnx_runtime_like_the_model(default_run):
    import onnxruntime

    _, run, _ = default_run
    from prunepilot.tasks import digits_task

    inputs = torch.stack([digits_task(progress=False).test[i][0] for i in range(16)])
    session = onnxruntime.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})[0]
    expected = load_torchscript(run / "model.ts.pt")(inputs).detach().numpy()
    assert abs(outputs - expected).max() <= 1e-4
    export = json.loads((run / "report.json").read_text())["final"]["export"]
    assert export["onnx_max_abs_diff"] <= 1e-4
    assert export["onnx_latency_ms"] > 0 and export["torchscript_latency_ms"] > 0


@pytest.mark.slow
def test_resume_runs_only_the_missing_trials(capsys, tmp_path, tiny_flags):
    code, _, _ = run_cli(
        capsys, "search", "--budget", "1000ms", "--trials", "3", "--out", tmp_path, "--name", "r", *tiny_flags
    )
    assert code == 0
    first = json.loads((tmp_path / "r" / "report.json").read_text())["trials"]
    calibration = (tmp_path / "r" / "latency_calibration.json").read_bytes()
    code, out, _ = run_cli(
        capsys, "search", "--resume", "--name", "r", "--out", tmp_path, "--trials", "5", "--quiet"
    )
    assert code == 0
    second = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [t["number"] for t in second["trials"]] == [0, 1, 2, 3, 4]
    assert second["run"]["trials_run_this_time"] == 2
    for before, after in zip(first, second["trials"][:3]):
        assert before["result"] == after["result"]  # unchanged, not recomputed
    # The latency predictor is fit on the first run's measurements, not re-measured.
    assert (tmp_path / "r" / "latency_calibration.json").read_bytes() == calibration
    # ... and refit on every measured trial, the earlier run's included.
    measured = len([t for t in second["trials"] if t["result"]])
    assert second["latency_predictor"]["observed"] == measured == 5
    assert second["latency_predictor"]["samples"] == 8 + measured
    assert "Latency predictor: fit on 8 measured policies" in out


@pytest.mark.slow
def test_a_later_run_of_the_same_model_reuses_the_calibration_and_every_run_times_its_phases(
    capsys, tmp_path, tiny_flags, monkeypatch
):
    from prunepilot.phases import PHASES

    monkeypatch.setenv("PRUNEPILOT_CACHE", str(tmp_path / "cache"))
    search = ["search", "--budget", "1000ms", "--trials", "2", "--out", tmp_path, *tiny_flags]
    reports = {}
    for name, seed in (("first", "0"), ("second", "0"), ("other-seed", "1")):
        code, out, _ = run_cli(capsys, *search, "--name", name, "--seed", seed)
        assert code == 0
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
        run = reports[name]["run"]
        # In the order they ran (the flags promote nothing: no promotion phase).
        assert tuple(run["phases_s"]) == tuple(p for p in PHASES if p != "promotion")
        assert sum(run["phases_s"].values()) <= run["wall_s"]
        share = run["phases_s"]["calibration"] / run["wall_s"]
        assert run["calibration_share"] == pytest.approx(share, abs=1e-3)
        last = out.splitlines()[-1]
        assert last.startswith("Wall time: prepare ") and "calibration " in last
    sources = {name: r["latency_predictor"]["calibration"]["source"] for name, r in reports.items()}
    # The second run's policies (same seed) were measured by the first; another seed's were not.
    assert sources == {"first": "measured", "second": "cache", "other-seed": "measured"}
    assert reports["first"]["latency_predictor"]["calibration"]["seconds"] > 0
    first, second = ((tmp_path / n / "latency_calibration.json").read_bytes() for n in ("first", "second"))
    assert first == second


@pytest.mark.slow
def test_no_trial_within_budget_exits_3_and_still_writes_the_report(
    capsys, tmp_path, tiny_flags, trained_tiny
):
    groups = [g.name for g in discover_groups(trained_tiny, (1, 8, 8))]
    smallest = apply_policy(trained_tiny, Policy.uniform(groups, 0.8), (1, 8, 8)).model
    budget = f"{1.05 * count_flops(smallest, torch.zeros(1, 1, 8, 8)):.0f}FLOPs"
    keep_all = tmp_path / "keep_all.json"
    keep_all.write_text(Policy.uniform(groups, 0.0).to_json())
    code, out, err = run_cli(
        capsys,
        "search",
        "--budget",
        budget,
        "--trials",
        "1",
        "--policy",
        keep_all,
        "--out",
        tmp_path,
        "--name",
        "x",
        *tiny_flags,
        "--finetune-steps",
        "0",
    )
    assert code == 3
    assert "No trial met the budget" in err and "Closest: trial 0" in err
    report = json.loads((tmp_path / "x" / "report.json").read_text())
    assert report["budget_met"] is False and report["chosen"] is None
    assert report["closest"]["number"] == 0
    assert not (tmp_path / "x" / "model.ts.pt").exists()
    summary = (tmp_path / "x" / "report.md").read_text()
    assert "No trial met the budget" in summary
    assert "of each trial after BatchNorm recalibration, no fine-tune:" in summary


def test_dry_run_prints_groups_baseline_and_space_without_trials(capsys, tmp_path, tiny_flags):
    code, out, _ = run_cli(capsys, "search", "--dry-run", "--budget", "300kFLOPs", "--out", tmp_path,
                           *tiny_flags)  # fmt: skip
    assert code == 0
    for fragment in (
        "stem.0",
        "layer2.shortcut.0",
        "Baseline (validation): accuracy",
        "Search space",
        "criteria: l1, l2, random, taylor, bn_scale, fpgm, lamp",
        "%",
        "Checked: the budget '300kFLOPs' (300kFLOPs) is reachable: the smallest model of the space measures",
    ):
        assert fragment in out
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_the_dry_run_is_the_search_gate_an_unreachable_budget_is_refused(capsys, tmp_path, tiny_flags):
    code, _, err = run_cli(capsys, "search", "--dry-run", "--budget", "10FLOPs", "--out", tmp_path,
                           *tiny_flags)  # fmt: skip
    assert code == 2 and "cannot be met" in err and not any(tmp_path.iterdir())
    code, out, err = run_cli(capsys, "search", "--dry-run", "--out", tmp_path, *tiny_flags)  # no budget
    assert code == 0, err
    assert "Checked: the smallest model of the space is made and runs (no budget to check)." in out


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--budget", "fast"], ["Cannot read the budget 'fast'", "accepted"]),
        (
            ["--budget", "2x", "--model", "no_such_pkg.models:net"],
            ["Cannot import 'no_such_pkg.models'", "--model"],
        ),
        (["--budget", "2x", "--model", "tests.zoo"], ["'package.module:factory'"]),
        (["--budget", "2x", "--model", "tests.zoo:missing"], ["has no attribute 'missing'"]),
        (
            ["--budget", "2x", "--model", "tests.zoo:broken_factory"],
            ["raised RuntimeError", "checkpoint server"],
        ),
        (["--budget", "2x", "--model", "tests.zoo:not_a_model"], ["must return a torch.nn.Module"]),
        (
            ["--budget", "2x", "--model", "tests.zoo:tiny_resnet", "--data", "tests.zoo:wrong_shape_data"],
            ["fails on a batch of the data", "(2, 3, 16, 16)"],
        ),
        (
            ["--budget", "2x", "--model", "tests.zoo:tiny_resnet", "--input-shape", "3,32,32"],
            ["--input-shape is (3, 32, 32)"],
        ),
        (["--budget", "2x", "--input-shape", "three"], ["--input-shape must be positive integers"]),
        (["--budget", "2x", "--model", "tests.zoo:nothing_to_prune"], ["no prunable group"]),
        (
            ["--budget", "2x", "--model", "tests.zoo:tiny_resnet", "--weights", "/nonexistent/w.pt"],
            ["is not a file"],
        ),
        (["--budget", "2x", "--data", "tests.zoo:digits_data"], ["need --model"]),
        (["--budget", "2x", "--trials", "0"], ["'trials' parameter of JobSpec", "Got 0 instead"]),
        (["--budget", "2x", "--ratio-max", "0.99"], ["'ratio_max' parameter"]),
        (["--budget", "2x", "--criteria", "l1,magic"], ["'criteria' parameter"]),
        (["--trials", "3"], ["'budget' parameter"]),
        (["--budget", "2x", "--trials", "many"], ["invalid int value"]),
        (["--budget", "2x", "--no-such-flag"], ["unrecognized arguments"]),
        (["--budget", "2x", "--task", "imagenet"], ["invalid choice: 'imagenet'", "digits", "mnist"]),
        (
            ["--budget", "2x", "--task", "mnist", "--model", "tests.zoo:tiny_resnet"],
            ["--task 'mnist' names a built-in task", "--model"],
        ),
        (["--budget", "2x", "--calibration-samples", "3"], ["'calibration_samples' parameter", ">= 8"]),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(capsys, tmp_path, flags, fragments):
    code, out, err = run_cli(capsys, "search", "--out", tmp_path, "--quiet", *flags)
    assert code == 2
    assert_one_line_error(err, *fragments)
    assert not any(tmp_path.iterdir())  # nothing was created


def test_a_budget_no_policy_can_reach_is_refused_before_any_trial(capsys, tmp_path, tiny_flags):
    code, _, err = run_cli(capsys, "search", "--budget", "10FLOPs", "--out", tmp_path, *tiny_flags)
    assert code == 2
    assert_one_line_error(err, "cannot be met", "smallest model in the search space")
    assert not any(tmp_path.iterdir())


def test_a_policy_file_with_a_ratio_out_of_range_is_refused(capsys, tmp_path, tiny_flags):
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps({"groups": {"stem.0": {"ratio": 1.5, "criterion": "l1"}}}))
    code, _, err = run_cli(
        capsys, "search", "--budget", "2x", "--policy", bad, "--out", tmp_path / "runs", *tiny_flags
    )
    assert code == 2
    assert_one_line_error(err, "policy.json", "'ratio' parameter", "[0, 0.95]", "1.5")


def test_a_policy_file_naming_unknown_groups_is_refused(capsys, tmp_path, tiny_flags):
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps({"groups": {"backbone.conv9": {"ratio": 0.5}}}))
    code, _, err = run_cli(
        capsys, "search", "--budget", "2x", "--policy", bad, "--out", tmp_path / "runs", *tiny_flags
    )
    assert code == 2
    assert_one_line_error(err, "backbone.conv9", "does not have")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_output_directory_is_reported(capsys, tmp_path, tiny_flags):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run_cli(capsys, "search", "--budget", "1000ms", "--out", locked, *tiny_flags)
    finally:
        locked.chmod(0o700)
    assert code == 2
    assert_one_line_error(err, "Cannot write the output directory")


def test_an_output_path_that_is_a_file_is_reported(capsys, tmp_path, tiny_flags):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("precious")
    code, _, err = run_cli(capsys, "search", "--budget", "1000ms", "--out", not_a_dir, *tiny_flags)
    assert code == 2
    assert_one_line_error(err, "Cannot write the output directory")
    assert not_a_dir.read_text() == "precious"


def test_an_existing_run_directory_is_never_overwritten(capsys, tmp_path, tiny_flags):
    run = tmp_path / "keep"
    run.mkdir()
    (run / "report.json").write_text("last night's report")
    code, _, err = run_cli(
        capsys, "search", "--budget", "1000ms", "--out", tmp_path, "--name", "keep", *tiny_flags
    )
    assert code == 2
    assert_one_line_error(err, "already exists", "--resume")
    assert (run / "report.json").read_text() == "last night's report"
    assert sorted(p.name for p in run.iterdir()) == ["report.json"]


def test_resume_of_a_missing_run_is_reported(capsys, tmp_path):
    code, _, err = run_cli(capsys, "search", "--resume", "--name", "nope", "--out", tmp_path)
    assert code == 2
    assert_one_line_error(err, "Cannot resume", "no config.json")


def test_debug_shows_the_traceback(capsys, tmp_path):
    code, _, err = run_cli(
        capsys,
        "search",
        "--budget",
        "2x",
        "--model",
        "tests.zoo:broken_factory",
        "--out",
        tmp_path,
        "--debug",
    )
    assert code == 2
    assert "Traceback" in err and "checkpoint server unreachable" in err


def test_python_dash_m_entry_point_reports_bad_input_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "prunepilot", "search", "--budget", "soon", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("prunepilot: error: Cannot read the budget 'soon'")
    assert "Traceback" not in result.stderr


def test_small_digits_fixture_is_small():
    train, val, test = small_digits_data()
    assert (len(train), len(val), len(test)) == (400, 150, 150)


@pytest.mark.ray
@pytest.mark.slow
def test_search_on_a_local_ray_instance_and_ray_is_stopped_after(capsys, tmp_path, tiny_flags):
    import ray

    flags = [f for f in tiny_flags]
    flags[flags.index("--workers") + 1] = "2"
    code, out, _ = run_cli(capsys, "search", "--budget", "1000ms", "--trials", "4", "--out", tmp_path,
                           "--name", "r", *flags)  # fmt: skip
    assert code == 0
    assert "Ray (a local Ray instance): 2 trial(s) in flight" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [t["state"] for t in report["trials"]] == ["COMPLETE"] * 4
    assert not ray.is_initialized()


def test_help_lists_every_flag_and_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        main(["search", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for flag in (
        "--budget",
        "50%",
        "--workers",
        "--ray-address",
        "--gpus-per-trial",
        "--no-latency-gate",
        "--resume",
        "--dry-run",
        "exit codes",
    ):
        assert flag in out


def test_every_default_the_help_states_is_the_job_spec_default():
    search = build_parser()._subparsers._group_actions[0].choices["search"]
    stated = {}
    for action in search._actions:
        found = re.search(r"\(default ([^;,)]+)", action.help or "")
        if found and hasattr(JobSpec, action.dest):
            stated[action.dest] = found.group(1)
    assert {"trials", "finetune_steps", "calibration_samples", "ratio_max", "lr"} <= set(stated)
    for name, text in stated.items():
        assert text == str(getattr(JobSpec, name)), name


@pytest.mark.slow
def test_a_named_study_keeps_each_night_and_starts_from_the_last_front(capsys, tmp_path, tiny_flags):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    nightly = ["search", "--budget", "1000ms", "--trials", "3", "--out", tmp_path, "--study", "nightly"]
    code, _, err = run_cli(capsys, *nightly, "--name", "night1", *tiny_flags)
    assert code == 0, err
    first = json.loads((tmp_path / "night1" / "report.json").read_text())
    front = [t["policy"] for t in first["trials"] if t["number"] in first["front"]]
    code, out, err = run_cli(capsys, *nightly, "--name", "night2", *tiny_flags)
    assert code == 0, err
    assert "warm-starting from its last front" in out
    second = json.loads((tmp_path / "night2" / "report.json").read_text())
    assert len(second["trials"]) == 3  # the report and the count are the night's own
    assert second["trials"][0]["policy"] in front  # the last front runs first
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "studies.journal")))
    assert len(optuna.load_study(study_name="nightly", storage=storage).trials) == 6
    assert not (tmp_path / "night2" / "study.journal").exists()


@pytest.mark.slow
def test_a_study_in_an_sqlite_storage(capsys, tmp_path, tiny_flags):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    code, _, err = run_cli(capsys, "search", "--budget", "1000ms", "--trials", "2", "--out", tmp_path,
                           "--name", "s", "--study", "x", "--storage", url, *tiny_flags)  # fmt: skip
    assert code == 0, err
    import optuna

    assert len(optuna.load_study(study_name="x", storage=url).trials) == 2


def test_a_storage_that_cannot_be_opened_is_refused_before_the_run_starts(capsys, tmp_path, tiny_flags):
    code, _, err = run_cli(capsys, "search", "--budget", "1000ms", "--out", tmp_path / "runs", "--name", "b",
                           "--storage", "nosuchdb://host/db", *tiny_flags)  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "Cannot open the study storage 'nosuchdb://host/db'")
    assert not (tmp_path / "runs" / "b").exists()


@pytest.fixture()
def default_run_copy(default_run, tmp_path) -> Path:
    """A copy of ``default_run``'s directory for a test that changes it (the original is shared)."""
    _, run, _ = default_run
    return Path(shutil.copytree(run, tmp_path / run.name))


@pytest.mark.slow
def test_report_recreates_every_report_file_from_the_study(capsys, default_run_copy):
    run = default_run_copy
    before = json.loads((run / "report.json").read_text())
    for name in ("report.json", "report.md", "report.html", "pareto.png"):
        (run / name).unlink()
    code, out, err = run_cli(capsys, "report", run)
    assert code == 0, err
    after = json.loads((run / "report.json").read_text())
    assert [t["number"] for t in after["trials"]] == [t["number"] for t in before["trials"]]
    assert after["front"] == before["front"] and after["chosen"]["number"] == before["chosen"]["number"]
    assert after["final"]["test_accuracy"] == before["final"]["test_accuracy"]
    assert all((run / name).is_file() for name in ("report.md", "report.html", "pareto.png"))
    assert "Report re-created" in out


@pytest.mark.slow
def test_export_recreates_a_trial_and_exports_it_checked(capsys, default_run_copy):
    run = default_run_copy
    from prunepilot.export import load_plan

    number = json.loads((run / "report.json").read_text())["front"][0]
    code, out, err = run_cli(capsys, "export", run, "--trial", number, "--format", "plan", "--format", "onnx")
    assert code == 0, err
    folder = run / "exports" / f"trial-{number}"
    assert (folder / "model.onnx").is_file() and not (folder / "model.ts.pt").exists()
    export = json.loads((folder / "export.json").read_text())["final"]["export"]
    assert export["plan_max_abs_diff"] <= 1e-5 and export["onnx_max_abs_diff"] <= 1e-4
    assert load_plan(folder)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.slow
def test_export_of_a_trial_the_run_does_not_have_is_refused(capsys, default_run):
    _, run, _ = default_run
    code, _, err = run_cli(capsys, "export", run, "--trial", 999)
    assert code == 2
    assert_one_line_error(err, "Trial 999 is not a completed trial", "completed:")
    code, _, err = run_cli(capsys, "report", run.parent / "nope")
    assert code == 2
    assert_one_line_error(err, "is not a run directory")


def test_dict_batches_and_a_dict_output_are_read_through_the_key_flags(capsys, tmp_path):
    base = ["search", "--model", "tests.zoo:dict_output_net", "--data", "tests.zoo:dict_batch_loaders",
            "--dry-run", "--out", tmp_path, "--quiet"]  # fmt: skip
    code, out, err = run_cli(capsys, *base, "--output-key", "scores", "--loss", "tests.zoo:recording_loss")
    assert code == 0, err
    assert "Search space:" in out
    code, _, err = run_cli(capsys, *base, "--input-key", "pixels")
    assert code == 2
    assert_one_line_error(err, "no key 'pixels' (set by input_key)", "['id', 'labels', 'pixel_values']")
