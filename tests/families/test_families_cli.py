"""The pruning families from the command line and job files: distillation, the gradual schedule,
the slimming warm-up; their checks and what the report says of them."""

import json

import pytest
import torch

from prunepilot.evaluators.metric import evaluate_metric
from tests import zoo
from tests.helpers import assert_one_line_error, run_cli


def test_a_search_with_every_family_keeps_the_given_model_as_its_baseline(capsys, tmp_path, tiny_flags,
                                                                           trained_tiny, monkeypatch):
    monkeypatch.setenv("PRUNEPILOT_CACHE", str(tmp_path / "cache"))  # the warm-up runs, not cached
    code, out, _ = run_cli(
        capsys, "search", "--budget", "290kFLOPs", "--trials", "2", "--out", tmp_path, "--name", "f",
        *tiny_flags, "--distill", "--distill-temperature", "2",
        "--schedule", "gradual", "--schedule-stages", "3",
        "--slimming-steps", "20", "--slimming-reg", "0.01", "--criteria", "bn_scale",
    )  # fmt: skip
    assert code == 0, out  # a FLOPs budget (70%), met whatever the load
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert report["trial_settings"]["distill"] == {"temperature": 2.0, "weight": 1.0}
    assert report["trial_settings"]["schedule"] == "oneshot"  # trials are one-shot
    final = report["final"]
    assert final["schedule"] == {"kind": "gradual", "stages": 3, "ramp": [0.7037, 0.963, 1.0],
                                 "steps": [5, 5, 20]}  # fmt: skip
    assert final["distill"] == {"temperature": 2.0, "weight": 1.0}
    assert report["slimming"]["steps"] == 20 and report["slimming"]["cached"] is False
    assert "Slimming warm-up: 20 steps (reg 0.01)" in out
    # The baseline is the model as given, not the slimmed one.
    val = zoo.small_digits_data()[1]
    assert report["baseline"]["accuracy"] == pytest.approx(evaluate_metric(trained_tiny, val), abs=1e-9)
    assert report["job"]["schedule"] == "gradual" and report["job"]["slimming_steps"] == 20
    page = (tmp_path / "f" / "report.md").read_text()
    assert ("pruning families: distillation from the unpruned model (T 2, weight 1); gradual final pruning "
            "in 3 stages (5/5/20 steps); slimming warm-up of 20 steps (reg 0.01)") in page
    assert "Pruning families: distillation" in (tmp_path / "f" / "report.html").read_text()
    # The plan export re-creates the gradually pruned model from the model's class.
    plan = json.loads((tmp_path / "f" / "plan.json").read_text())
    assert plan["removed"] or plan["removed_blocks"]
    assert final["params"] < report["baseline"]["params"]
    assert torch.load(tmp_path / "f" / "weights.pt", weights_only=True)


def test_a_model_without_batchnorm_runs_without_the_warm_up_and_says_so(capsys, tmp_path, tiny_flags):
    flags = [f for f in tiny_flags]
    flags[flags.index("tests.zoo:tiny_resnet")] = "tests.zoo:mlp_logsoftmax"
    del flags[flags.index("--weights"):flags.index("--weights") + 2]
    code, out, _ = run_cli(capsys, "search", "--budget", "1000ms", "--trials", "1", "--out", tmp_path,
                           "--slimming-steps", "5", *flags)  # fmt: skip
    assert code == 0
    assert "Slimming warm-up skipped: the model has no BatchNorm scales" in out


@pytest.mark.parametrize(("flags", "fragments"), [
    (["--schedule", "cyclic"], ["--schedule", "invalid choice"]),
    (["--schedule", "gradual", "--final-steps", "7"], ["'final_steps'", "2 x --schedule-stages (8)"]),
    (["--schedule-stages", "1"], ["'schedule_stages'", "[2, 20]"]),
    (["--distill-temperature", "0"], ["'distill_temperature'", "a finite number > 0", "Got 0.0"]),
    (["--distill-weight", "nan"], ["'distill_weight'", "a finite number > 0"]),
    (["--slimming-steps", "-3"], ["'slimming_steps'", "Got -3"]),
    (["--slimming-reg", "inf"], ["'slimming_reg'", "a finite number > 0"]),
])  # fmt: skip
def test_bad_family_settings_get_one_line(capsys, tmp_path, flags, fragments):
    code, _, err = run_cli(capsys, "search", "--budget", "2x", "--out", tmp_path, *flags)
    assert code == 2
    assert_one_line_error(err, *fragments)
    assert not any(tmp_path.iterdir())


def test_job_files_take_the_families_keys(capsys, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('budget = "2x"\n[finetune]\ndistill = "yes"\n')
    code, _, err = run_cli(capsys, "validate", job)
    assert code == 2
    assert_one_line_error(err, "finetune.distill", "true or false")
    job.write_text('budget = "2x"\n[finetune]\ndistill = true\nschedule = "gradual"\n'
                   '[slimming]\nsteps = 10\nreg = 0.001\n')  # fmt: skip
    code, out, _ = run_cli(capsys, "validate", job)
    assert code == 0, out
