"""Job files: every key, flags over the file, and one line naming the key for each mistake."""

from __future__ import annotations

import json

import pytest

from prunepilot.settings import settings_of
from prunepilot.settings.jobfile import load_job_file as load_with
from prunepilot.spec import JobSpec
from tests.helpers import REPO, run_cli

EXAMPLE = REPO / "examples" / "digits.toml"


def write(tmp_path, text: str):
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def load_job_file(path):
    return load_with(path, settings_of(JobSpec))


def test_every_key_is_one_setting_and_every_setting_but_the_run_switches_has_a_key():
    keys = [s.key for s in settings_of(JobSpec) if s.key]
    assert len(set(keys)) == len(keys)
    keyless = {s.name for s in settings_of(JobSpec) if not s.key}
    assert keyless == {"resume", "dry_run", "python_model"}


def test_the_example_job_file_loads_and_validates():
    job = load_job_file(EXAMPLE)
    spec = JobSpec(**job.values).validate()
    assert spec.budget == "2x" and spec.trials == 40 and spec.task == "digits"
    assert job.origin["ratio_max"] == "space.ratio_max"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('budget = "2x"\ntrials = "many"', ["job.toml: trials: must be an integer", "'many'"]),
        ('budget = "2x"\ntrials = 0', ["job.toml: trials:", "'trials' parameter", "Got 0"]),
        ('budget = "2x"\ntrials = true', ["trials: must be an integer", "True"]),
        ('budget = "fast"', ["job.toml: budget:", "Cannot read the budget 'fast'", "accepted"]),
        ("budget = 30", ["job.toml: budget: must be a string", "Got 30"]),
        ('budget = "2x"\ntimeout = -5', ["job.toml: timeout:", "'timeout' parameter"]),
        ('budget = "2x"\nseed = 1.5', ["job.toml: seed: must be an integer"]),
        ('budget = "2x"\nbudgte = "3x"', ["job.toml: budgte: unknown key", "accepted: budget"]),
        ('budget = "2x"\n[modle]\ntask = "digits"', ["[modle]: unknown section", "[model]"]),
        ('budget = "2x"\n[model]\ntask = "cifar"', ["job.toml: model.task:", "'digits', 'mnist'"]),
        (
            'budget = "2x"\n[model]\nfactory = "nope"',
            ["job.toml: model.factory:", "'package.module:factory'"],
        ),
        (
            'budget = "2x"\n[model]\nfactory = "tests.zoo:missing"',
            ["job.toml: model.factory:", "has no attribute 'missing'"],
        ),
        (
            'budget = "2x"\n[model]\nfactory = "tests.zoo:tiny_resnet"\ncheckpoint = "/nonexistent.pt"',
            ["job.toml: model.checkpoint:", "is not a file"],
        ),
        ('budget = "2x"\n[model]\ninput_shape = "1x8x8"', ["model.input_shape: must be a list of integers"]),
        (
            'budget = "2x"\n[model]\ninput_shape = [3, 32, 32]',
            ["job.toml: model.input_shape:", "(1, 8, 8)"],
        ),
        (
            'budget = "2x"\n[model]\nfactory = "tests.zoo:tiny_resnet"\n'
            '[data]\nfactory = "tests.zoo:wrong_shape_data"',
            ["job.toml: model.factory:", "fails on a batch"],
        ),
        (
            'budget = "2x"\n[data]\nfactory = "tests.zoo:digits_data"',
            ["job.toml: data.factory:", "need --model"],
        ),
        ('budget = "2x"\n[space]\nratio_max = 0.99', ["job.toml: space.ratio_max:", "(0, 0.95]"]),
        ('budget = "2x"\n[space]\nratio_max = "high"', ["space.ratio_max: must be a number"]),
        ('budget = "2x"\n[space]\ncriteria = ["l1", "magic"]', ["job.toml: space.criteria:", "'magic'"]),
        ('budget = "2x"\n[space]\ncriteria = "l1"', ["space.criteria: must be a list of strings"]),
        ('budget = "2x"\n[space]\nround_to_choices = [0, 8]', ["job.toml: space.round_to_choices:"]),
        ('budget = "2x"\n[space]\nratio = 0.5', ["space.ratio: unknown key", "space.ratio_max"]),
        ('budget = "2x"\n[finetune]\nlr = 0', ["job.toml: finetune.lr:", "> 0"]),
        ('budget = "2x"\n[finetune]\nsteps = -1', ["job.toml: finetune.steps:", "Got -1"]),
        ('budget = "2x"\n[latency]\nthreads = 0', ["job.toml: latency.threads:"]),
        ('budget = "2x"\n[screen]\nenabled = "yes"', ["screen.enabled: must be true or false"]),
        ('budget = "2x"\n[screen]\ncalibration_samples = 3', ["screen.calibration_samples:", ">= 8"]),
        ('budget = "2x"\n[ray]\ncpus_per_trial = 0', ["job.toml: ray.cpus_per_trial:", "> 0"]),
        ('budget = "2x"\n[ray]\nworkers = -1', ["job.toml: ray.workers:"]),
        ('budget = "2x"\n[ray.extra]\nx = 1', ["ray.extra: tables nest one level only"]),
        ('budget = "2x"\ntrials = [', ["job.toml: not valid TOML"]),
        ("trials = 3", ["budget:", "'budget' parameter", "given"]),
        ('budget = "2x"\n[metric]\ndirection = "up"', ["job.toml: metric.direction:", "'minimize'", "'up'"]),
        ('budget = "2x"\n[metric]\nfunction = "tests.zoo:broken_metric"', ["metric.function:", "fails"]),
        ('budget = "2x"\n[model]\ndevice = "gpu0"', ["job.toml: model.device:", "'cuda:N'"]),
        ('budget = "2x"\n[model]\ninput_dtype = "int8"', ["job.toml: model.input_dtype:", "'int64'"]),
        ('budget = "2x"\n[space]\nexclude = "stem.0"', ["space.exclude: must be a list of strings"]),
        ('budget = "2x"\n[space]\nexclude = ["nope.*"]', ["job.toml: space.exclude:", "matches no"]),
        ('budget = "2x"\n[space]\nratio_min = 0.9', ["job.toml: space.ratio_min:", "Got 0.9"]),
        ('budget = "2x"\n[model]\nfactory = "tests.zoo:dict_output_net"\n[data]\nfactory = '
         '"tests.zoo:dict_batch_loaders"\ninput_key = "image"', ["data.input_key:", "no key 'image'"]),
        ('budget = "2x"\n[model]\nfactory = "tests.zoo:dict_output_net"\noutput_key = "logit"\n[data]\n'
         'factory = "tests.zoo:dict_batch_loaders"', ["model.output_key:", "got 'logit'"]),
        ('budget = "2x"\n[finetune]\nloss = "tests.zoo:float_loss"', ["finetune.loss:", "scalar tensor"]),
    ],
)
def test_a_malformed_job_file_gets_one_line_naming_the_key_and_exit_2(capsys, tmp_path, text, fragments):
    path = write(tmp_path, text)
    out_dir = tmp_path / "runs"
    code, _, err = run_cli(capsys, "search", path, "--out", out_dir, "--quiet")
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("prunepilot: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out_dir.exists()  # nothing was written


def test_a_missing_job_file_is_named(capsys, tmp_path):
    code, _, err = run_cli(capsys, "search", tmp_path / "nope.toml", "--quiet")
    assert code == 2 and "Cannot read the job file" in err and "nope.toml" in err


@pytest.mark.slow
def test_flags_override_the_job_file_and_the_resolved_job_is_saved(capsys, tmp_path, tiny_weights):
    path = write(
        tmp_path,
        f"""budget = "1000ms"
trials = 7
out = "{tmp_path / "runs"}"
name = "j"
[model]
factory = "tests.zoo:tiny_resnet"
checkpoint = "{tiny_weights}"
[data]
factory = "tests.zoo:small_digits_data"
[finetune]
steps = 5
final_steps = 10
bn_batches = 2
[latency]
batch_size = 8
repeats = 3
[screen]
calibration_samples = 8
[ray]
workers = 0
""",
    )
    code, _, err = run_cli(capsys, "search", path, "--trials", "2", "--quiet")
    assert code == 0, err
    config = json.loads((tmp_path / "runs" / "j" / "config.json").read_text())
    assert config["trials"] == 2  # the flag won
    assert config["finetune_steps"] == 5 and config["latency_batch"] == 8  # from the file
    assert config["model"] == "tests.zoo:tiny_resnet"
    report = json.loads((tmp_path / "runs" / "j" / "report.json").read_text())
    assert report["screening"]["trained"] == 2
    assert report["latency_predictor"]["observed"] == 2  # each measured trial was fed back to the screen
    trained = [t for t in report["trials"] if t["state"] == "COMPLETE"]
    assert all(t["predicted"] > 0 for t in trained)  # the screen's prediction, next to the measurement


def test_a_wrong_flag_is_blamed_on_the_flag_not_the_file(capsys, tmp_path):
    path = write(tmp_path, 'budget = "2x"\n[space]\nratio_max = 0.5')
    code, _, err = run_cli(capsys, "search", path, "--ratio-max", "2", "--quiet")
    assert code == 2 and "(--ratio-max)" in err and "space.ratio_max" not in err


def test_validate_checks_the_example_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "validate", EXAMPLE)
    assert code == 0, err
    assert "The job is valid: task digits" in out and "is reachable" in out
    assert not any(tmp_path.iterdir())


def test_validate_reports_every_wrong_key_one_line_each(capsys, tmp_path):
    path = write(tmp_path, 'budget = "fast"\ntrials = 0\n[space]\nratio_max = 2.0')
    code, _, err = run_cli(capsys, "validate", path)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 3, err
    assert [line.split(": ")[3] for line in lines] == ["trials", "space.ratio_max", "budget"]


def test_validate_refuses_a_budget_that_cannot_be_reached(capsys, tmp_path):
    path = write(tmp_path, 'budget = "10FLOPs"\n[latency]\nrepeats = 3\nbatch_size = 8')
    code, _, err = run_cli(capsys, "validate", path)
    assert code == 2 and "cannot be met" in err
    assert "raise --ratio-max" in err  # the flag, on the command line


def test_every_unknown_key_is_named_up_to_twenty_lines_then_counted(capsys, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text("[space]\n" + "".join(f"k{i} = {i}\n" for i in range(10_000)))
    code, _, err = run_cli(capsys, "validate", job)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 21
    assert "space.k0: unknown key" in lines[0] and "space.k19: unknown key" in lines[19]
    assert lines[-1] == "prunepilot: error: ... and 9,980 more problems of the same input."


def test_a_huge_value_is_echoed_cut_with_its_length(capsys, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(f'trials = "{"x" * 1_000_000}"\n')
    code, _, err = run_cli(capsys, "validate", job)
    assert code == 2 and len(err) < 600
    assert "trials: must be an integer" in err and "(1,000,002 characters)" in err
    code, _, err = run_cli(capsys, "search", "--budget", "2x", "--exclude", "y" * 100_000, "--dry-run")
    assert code == 2 and len(err) < 2200, err[:300]
