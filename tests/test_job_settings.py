"""Job settings beyond model and budget: the metric and its direction, the input dtype, the target
device, the groups left alone and the ratio bounds; each works end to end, and bad values get one
line naming the setting."""

from __future__ import annotations

import json

import optuna
import pytest
import torch

from prunepilot.export import load_plan
from prunepilot.search.pareto import choose
from prunepilot.spec import JobSpec
from tests import zoo
from tests.helpers import FAST_FLAGS, assert_one_line_error, run_cli


def search(capsys, tmp_path, *flags) -> tuple[int, dict, str]:
    code, _, err = run_cli(capsys, "search", "--budget", "1000ms", "--trials", "3", "--out", tmp_path,
                           "--name", "r", *flags)  # fmt: skip
    report_path = tmp_path / "r" / "report.json"
    return code, json.loads(report_path.read_text()) if report_path.exists() else {}, err


@pytest.mark.slow
def test_a_minimised_metric_is_searched_downwards_and_reported_by_name(capsys, tmp_path, tiny_flags):
    code, report, err = search(
        capsys, tmp_path, *tiny_flags, "--metric", "tests.zoo:error_rate", "--metric-direction", "minimize"
    )
    assert code == 0, err
    assert report["metric"] == {"name": "tests.zoo:error_rate", "function": "tests.zoo:error_rate",
                                "direction": "minimize"}  # fmt: skip
    complete = [t for t in report["trials"] if t["state"] == "COMPLETE"]
    errors = [t["result"]["accuracy"] for t in complete]
    assert all(0.0 <= e <= 1.0 for e in errors)
    # The final candidates are the front's lowest error rates (every trial is within 1000 ms), and
    # the chosen one has the lowest error rate among them after the final fine-tune.
    front = [t for t in complete if t["number"] in report["front"]]
    front.sort(key=lambda t: t["result"]["accuracy"])
    candidates = report["final"]["candidates"]
    assert [c["number"] for c in candidates] == [t["number"] for t in front[: len(candidates)]]
    assert report["chosen"]["number"] == min(candidates, key=lambda c: c["val_accuracy"])["number"]
    # An error rate: the base model's is low (it is trained), not near 1 as an accuracy would be.
    assert report["baseline"]["accuracy"] < 0.5
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "| test tests.zoo:error_rate |" in markdown and " pt |" not in markdown  # a plain difference


def test_choose_picks_the_lowest_value_of_a_minimised_metric():
    study = optuna.create_study(directions=["minimize", "minimize"])
    for loss, cost in ((0.3, 1.0), (0.1, 2.0), (0.2, 0.5)):
        trial = study.ask()
        trial.set_constraint("budget", -1.0)
        study.tell(trial, [loss, cost])
    assert choose(study).values == [0.1, 2.0]


@pytest.mark.slow
def test_a_study_refuses_a_metric_direction_other_than_its_own(capsys, tmp_path, tiny_flags):
    common = ["--study", "s", "--budget", "1000ms", "--trials", "1", "--out", tmp_path, *tiny_flags]
    code, _, err = run_cli(capsys, "search", "--name", "a", *common)
    assert code == 0, err
    code, _, err = run_cli(capsys, "search", "--name", "b", *common, "--metric", "tests.zoo:error_rate",
                           "--metric-direction", "minimize")  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "The study 's' maximizes the metric 'top1_accuracy'",
                          "minimizes 'tests.zoo:error_rate'")  # fmt: skip
    assert not (tmp_path / "b").exists()  # refused before the run started
    code, _, err = run_cli(capsys, "search", "--name", "c", *common, "--metric", "tests.zoo:accuracy_share")
    assert code == 2
    assert_one_line_error(err, "maximizes the metric 'top1_accuracy'", "maximizes 'tests.zoo:accuracy_share'")


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--metric", "tests.zoo:broken_metric"], ["'tests.zoo:broken_metric' fails", "KeyError"]),
        (["--metric", "tests.zoo:no_such_metric"], ["has no attribute 'no_such_metric'", "--metric"]),
        (["--metric", "error_rate"], ["--metric must look like 'package.module:factory'"]),
        (["--exclude", "layer9.*"], ["'layer9.*', which matches no prunable group", "layer1.conv1"]),
        (["--exclude", "*"], ["leaves no group to prune"]),
        (["--ratio-min", "0.5", "--ratio-max", "0.4"], ["'ratio_min' parameter", "Got 0.5"]),
        (["--input-dtype", "int64"], ["samples are float32 but --input-dtype is int64"]),
        (["--input-dtype", "complex64"], ["'input_dtype' parameter", "'float32'", "'complex64'"]),
        (["--device", "tpu"], ["'device' parameter", "'cpu', 'cuda' or 'cuda:N'"]),
        (["--gpus-per-trial", "1"], ["'gpus_per_trial' parameter", "0 when the target device is 'cpu'"]),
    ],
)
def test_bad_job_settings_are_one_line_naming_the_setting(capsys, tmp_path, tiny_flags, flags, fragments):
    code, _, err = run_cli(capsys, "search", "--budget", "1000ms", "--out", tmp_path, "--name", "x",
                           *tiny_flags, *flags)  # fmt: skip
    assert code == 2
    assert_one_line_error(err, *fragments)
    assert not (tmp_path / "x").exists()


def test_a_cuda_target_on_ray_needs_gpus_per_trial(capsys, tmp_path, tiny_flags):
    at = tiny_flags.index("--workers")
    flags = tiny_flags[:at] + tiny_flags[at + 2 :]  # without "--workers 0"
    code, _, err = run_cli(capsys, "search", "--budget", "1000ms", "--out", tmp_path, *flags,
                           "--workers", "2", "--device", "cuda")  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "'device' parameter", "--gpus-per-trial > 0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_cuda_target_without_cuda_is_refused_before_anything_runs(capsys, tmp_path, tiny_flags):
    code, _, err = run_cli(capsys, "search", "--budget", "1000ms", "--out", tmp_path, "--name", "g",
                           *tiny_flags, "--device", "cuda")  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "'cuda' but CUDA is not available on this machine")
    assert not (tmp_path / "g").exists()


@pytest.mark.slow
def test_excluded_groups_are_never_pruned_and_ratios_keep_their_bounds(capsys, tmp_path, tiny_flags):
    code, report, err = search(capsys, tmp_path, *tiny_flags, "--exclude", "layer3.*,stem.0",
                               "--ratio-min", "0.3", "--ratio-max", "0.6")  # fmt: skip
    assert code == 0, err
    names = {g["name"] for g in report["groups"]}
    assert names == {"layer1.conv1", "layer2.conv1", "layer2.shortcut.0"}
    assert report["blocks"] == ["layer1"]  # layer3.* is left alone: the block is not removed either
    for trial in report["trials"]:
        groups = trial["policy"]["groups"]
        assert set(groups) <= names
        assert all(0.3 - 1e-9 <= g["ratio"] <= 0.6 + 1e-9 for g in groups.values()), groups
    model, base = load_plan(tmp_path / "r"), zoo.tiny_resnet()
    assert model.layer3.conv1.out_channels == base.layer3.conv1.out_channels  # left alone
    assert model.stem[0].out_channels == base.stem[0].out_channels
    # layer1 is pruned by >= 0.3, or removed whole (the search may remove it).
    assert isinstance(model.layer1, torch.nn.Identity) or (
        model.layer1.conv1.out_channels < base.layer1.conv1.out_channels
    )


@pytest.mark.slow
def test_a_model_of_token_ids_is_traced_timed_searched_and_exported(capsys, tmp_path):
    code, report, err = search(
        capsys, tmp_path, "--model", "tests.zoo:token_net", "--data", "tests.zoo:token_data",
        "--input-dtype", "int64", *FAST_FLAGS,
    )  # fmt: skip
    assert code == 0, err
    assert report["task"]["input_dtype"] == "int64" and report["task"]["input_shape"] == [12]
    assert report["budget_met"] and report["final"]["export"]["onnx_max_abs_diff"] <= 1e-4
    plan = json.loads((tmp_path / "r" / "plan.json").read_text())
    assert plan["input_dtype"] == "int64"
    model = load_plan(tmp_path / "r")
    tokens = torch.randint(0, 16, (3, 12))
    assert model(tokens).shape == (3, 4)


def test_job_file_sections_for_the_metric_device_and_space(capsys, tmp_path, tiny_weights):
    job = tmp_path / "job.toml"
    job.write_text(
        'budget = "1000ms"\n'
        f'[model]\nfactory = "tests.zoo:tiny_resnet"\ncheckpoint = "{tiny_weights}"\ndevice = "cpu"\n'
        'input_dtype = "float32"\n'
        '[data]\nfactory = "tests.zoo:small_digits_data"\n'
        '[metric]\nfunction = "tests.zoo:error_rate"\ndirection = "minimize"\n'
        '[space]\nexclude = ["stem.0"]\nratio_min = 0.1\n'
    )
    code, out, err = run_cli(capsys, "validate", job)
    assert code == 0, err
    assert "4 prunable groups" in out and "baseline val tests.zoo:error_rate" in out
    job.write_text(job.read_text().replace('direction = "minimize"', 'direction = "down"'))
    code, _, err = run_cli(capsys, "validate", job)
    assert code == 2
    assert_one_line_error(err, "job.toml: metric.direction:", "'maximize', 'minimize'", "'down'")


def test_an_exclude_that_is_not_a_list_is_refused():
    problems = JobSpec(budget="2x", exclude="conv1").problems()
    assert [p.field for p in problems] == ["exclude"]


@pytest.mark.slow
def test_a_policy_file_may_name_an_excluded_group_which_is_left_alone(capsys, tmp_path, tiny_flags):
    policy = tmp_path / "start.json"
    policy.write_text(
        json.dumps(
            {
                "schema": "prunepilot.policy/1",
                "round_to": 1,
                "groups": {
                    "stem.0": {"ratio": 0.5, "criterion": "l1"},
                    "layer1.conv1": {"ratio": 0.5, "criterion": "l2"},
                },
            }
        )
    )
    code, report, err = search(capsys, tmp_path, *tiny_flags, "--policy", policy, "--exclude", "stem.0")
    assert code == 0, err
    first = report["trials"][0]["policy"]["groups"]
    assert "stem.0" not in first and first["layer1.conv1"] == {"ratio": 0.5, "criterion": "l2"}


@pytest.mark.slow
def test_the_report_of_a_cuda_run_is_rebuilt_on_a_machine_without_cuda(capsys, tmp_path, tiny_flags):
    code, _, err = search(capsys, tmp_path, *tiny_flags)
    assert code == 0, err
    config = tmp_path / "r" / "config.json"
    saved = json.loads(config.read_text())
    config.write_text(json.dumps({**saved, "device": "cuda", "workers": 0}))
    code, _, err = run_cli(capsys, "report", tmp_path / "r")  # an edited run is no longer the one made here
    assert code == 2 and "add --trust-run" in err
    code, out, err = run_cli(capsys, "report", tmp_path / "r", "--trust-run")
    assert code == 0, err
    assert "Report re-created" in out


@pytest.mark.slow
@pytest.mark.parametrize("fill", [True, False])
def test_fill_trains_sampled_policies_just_under_the_budget_and_no_fill_turns_it_off(
    capsys, tmp_path, tiny_flags, fill
):
    from prunepilot.evaluators import count_flops

    limit = 0.6 * count_flops(zoo.tiny_resnet(), torch.zeros(1, 1, 8, 8))
    flags = [*tiny_flags, *([] if fill else ["--no-fill"])]
    code, _, err = run_cli(capsys, "search", "--budget", f"{limit:.0f}FLOPs", "--trials", "7", "--out",
                           tmp_path, "--name", "f", *flags)  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    filled = [t for t in report["trials"] if t["filled_from"]]
    assert report["screening"]["filled"] == len(filled)
    assert f"{len(filled)} filled up to the budget" in (tmp_path / "f" / "report.md").read_text()
    if not fill:
        assert not filled
        return
    assert filled, "sampled policies that fit a 60% FLOPs budget leave slack to fill"
    for trial in filled:
        sampled, trained = trial["filled_from"]["groups"], trial["policy"]["groups"]
        assert all(trained[g]["ratio"] <= sampled[g]["ratio"] for g in sampled)
        assert trial["result"]["flops"] <= limit


@pytest.mark.slow
def test_a_budget_the_baseline_meets_maps_the_whole_trade_off_and_fills_nothing(capsys, tmp_path, tiny_flags):
    from prunepilot.evaluators import count_flops

    loose = 2 * count_flops(zoo.tiny_resnet(), torch.zeros(1, 1, 8, 8))
    code, _, err = run_cli(capsys, "search", "--budget", f"{loose:.0f}FLOPs", "--trials", "8", "--out",
                           tmp_path, "--name", "w", *tiny_flags)  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "w" / "report.json").read_text())
    # A sweep of uniform policies over the whole range first (half of the trials, at least 3), up
    # to the space's largest ratio; then sampled policies (which set ratios group by group) ...
    ratios = [{g["ratio"] for g in t["policy"]["groups"].values()} for t in report["trials"]]
    assert [len(r) for r in ratios[:4]] == [1, 1, 1, 1] and len(ratios[4]) > 1
    sweep = [r.pop() for r in ratios[:4]]
    assert sweep == sorted(sweep) and sweep[0] > 0 and sweep[-1] == 0.8
    # Every other one without the removable blocks: the shallow model's trade-off.
    assert [t["policy"]["removed_blocks"] for t in report["trials"][:4]] == [[], ["layer1", "layer3"]] * 2
    # ... and sampled policies are trained as sampled: filling up to a budget the baseline meets
    # would undo their pruning.
    assert report["screening"]["filled"] == 0
    assert not any(t["filled_from"] for t in report["trials"])
    sampled = [t for t in report["trials"][4:] if t["result"]]
    assert sampled and all(t["result"]["flops"] < 0.99 * report["baseline"]["flops"] for t in sampled)


def _removing(tmp_path, *blocks: str):
    path = tmp_path / "start.json"
    path.write_text(json.dumps({"groups": {"layer1.conv1": {"ratio": 0.5}}, "removed_blocks": list(blocks)}))
    return path


@pytest.mark.slow
def test_a_search_removes_whole_blocks_and_the_export_replays_them(capsys, tmp_path, tiny_flags):
    code, report, err = search(capsys, tmp_path, *tiny_flags, "--policy", _removing(tmp_path, "layer3"))
    assert code == 0, err
    assert report["blocks"] == ["layer1", "layer3"]
    first = report["trials"][0]
    assert first["policy"]["removed_blocks"] == ["layer3"] and first["state"] == "COMPLETE"
    code, _, err = run_cli(capsys, "export", tmp_path / "r", "--trial", "0", "--format", "plan", "--quiet")
    assert code == 0, err
    folder = tmp_path / "r" / "exports" / "trial-0"
    assert json.loads((folder / "plan.json").read_text())["removed_blocks"] == ["layer3"]
    model = load_plan(folder)
    assert isinstance(model.layer3, torch.nn.Identity) and model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert json.loads((folder / "policy.json").read_text())["removed_blocks"] == ["layer3"]


@pytest.mark.slow
def test_without_block_removal_no_block_is_removed_not_even_by_a_policy_file(capsys, tmp_path, tiny_flags):
    code, report, err = search(capsys, tmp_path, *tiny_flags, "--policy", _removing(tmp_path, "layer3"),
                               "--no-block-removal")  # fmt: skip
    assert code == 0, err
    assert report["blocks"] == [] and report["job"]["block_removal"] is False
    assert all(t["policy"]["removed_blocks"] == [] for t in report["trials"])


def test_the_dry_run_lists_the_removable_blocks(capsys, tmp_path, tiny_flags):
    dry = ["search", "--dry-run", "--budget", "300kFLOPs", "--out", tmp_path, *tiny_flags]
    code, out, _ = run_cli(capsys, *dry)
    assert code == 0 and "removable blocks: layer1, layer3" in out
    code, out, _ = run_cli(capsys, *dry, "--no-block-removal")
    assert code == 0 and "removable blocks: none" in out


def test_a_policy_file_removing_a_block_without_an_identity_shortcut_is_refused(capsys, tmp_path, tiny_flags):
    code, _, err = run_cli(capsys, "search", "--budget", "2x", "--policy", _removing(tmp_path, "layer2"),
                           "--out", tmp_path / "runs", *tiny_flags)  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "start.json", "removes block(s) ['layer2']", "['layer1', 'layer3']")
    assert not (tmp_path / "runs").exists()


def test_block_removal_in_a_job_file(capsys, tmp_path, tiny_weights):
    job = tmp_path / "job.toml"
    job.write_text(
        f'budget = "300kFLOPs"\n[model]\nfactory = "tests.zoo:tiny_resnet"\ncheckpoint = "{tiny_weights}"\n'
        '[data]\nfactory = "tests.zoo:small_digits_data"\n[space]\nblock_removal = false\n'
    )
    code, out, err = run_cli(capsys, "search", job, "--dry-run", "--quiet", "--out", tmp_path)
    assert code == 0, err
    assert "removable blocks: none" in out
    job.write_text(job.read_text().replace("block_removal = false", 'block_removal = "no"'))
    code, _, err = run_cli(capsys, "validate", job)
    assert code == 2
    assert_one_line_error(err, "job.toml: space.block_removal:")


def test_a_run_saved_before_block_removal_resumes_without_it():
    saved = JobSpec(budget="2x").to_dict()
    del saved["block_removal"]
    assert JobSpec.from_dict(saved).block_removal is False
    assert JobSpec.from_dict(JobSpec(budget="2x").to_dict()).block_removal is True


def _flops_budget(*blocks: str) -> float:
    """FLOPs of the tiny model with every group pruned by 0.8 and ``blocks`` removed."""
    from prunepilot import Policy, apply_policy, discover_groups
    from prunepilot.evaluators import count_flops

    model = zoo.tiny_resnet()
    names = [g.name for g in discover_groups(model, (1, 8, 8))]
    smallest = apply_policy(
        model, Policy(Policy.uniform(names, 0.8).groups, removed_blocks=blocks), (1, 8, 8)
    ).model
    return count_flops(smallest, torch.zeros(1, 1, 8, 8))


@pytest.mark.slow
def test_a_budget_only_block_removal_reaches_is_searched_and_without_it_refused(capsys, tmp_path, tiny_flags):
    budget = f"{(_flops_budget() + _flops_budget('layer1', 'layer3')) / 2:.0f}FLOPs"
    code, report, err = search(capsys, tmp_path, *tiny_flags, "--budget", budget)
    assert code == 0, err
    assert report["chosen"]["policy"]["removed_blocks"]  # nothing fits without removing a block
    code, _, err = run_cli(capsys, "search", "--budget", budget, "--out", tmp_path / "no", *tiny_flags,
                           "--no-block-removal")  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "cannot be met", "every group pruned by 0.8)")
    assert not (tmp_path / "no").exists()


@pytest.mark.slow
def test_removing_blocks_alone_is_a_warm_start_when_it_fits(capsys, tmp_path, tiny_flags, trained_tiny):
    from prunepilot import Policy, apply_policy
    from prunepilot.evaluators import count_flops

    shallow = apply_policy(trained_tiny, Policy({}, removed_blocks=("layer1", "layer3")), (1, 8, 8)).model
    budget = f"{count_flops(shallow, torch.zeros(1, 1, 8, 8)) + 1:.0f}FLOPs"
    code, report, err = search(capsys, tmp_path, *tiny_flags, "--budget", budget)
    assert code == 0, err
    policies = [t["policy"] for t in report["trials"]]
    assert any(p["removed_blocks"] == ["layer1", "layer3"]
               and not any(g["ratio"] for g in p["groups"].values())
               for p in policies)  # fmt: skip


def test_an_exclude_may_name_a_block_alone(capsys, tmp_path, tiny_flags):
    code, out, err = run_cli(capsys, "search", "--dry-run", "--budget", "300kFLOPs", "--out", tmp_path,
                             *tiny_flags, "--exclude", "layer3")  # fmt: skip
    assert code == 0, err
    assert "removable blocks: layer1" in out and "layer3.conv1" in out  # the block kept, its group searched
    code, _, err = run_cli(capsys, "search", "--dry-run", "--budget", "2x", "--out", tmp_path, *tiny_flags,
                           "--exclude", "layer3", "--no-block-removal")  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "'layer3', which matches no prunable group;")
