"""Models and data shapes that once broke a run, and run-directory details."""

from __future__ import annotations

import json
import os
import stat

import optuna
import pytest
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from prunepilot import Policy, apply_policy, discover_groups
from prunepilot.cli import main
from prunepilot.export import load_plan, load_torchscript
from prunepilot.policies import kept_channels
from prunepilot.rundir import write_atomically
from tests import zoo
from tests.helpers import FAST_FLAGS, assert_one_line_error, run_cli


def test_a_classifier_behind_a_log_softmax_is_never_pruned():
    model = zoo.mlp_logsoftmax()
    groups = discover_groups(model, (1, 8, 8))
    assert [g.name for g in groups] == ["1"]  # the hidden Linear only, not the classifier "3"
    pruned = apply_policy(model, Policy.uniform(["1"], 0.5), (1, 8, 8)).model
    assert pruned(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_groups_touching_grouped_convolutions_are_left_whole():
    model = zoo.grouped_net()
    names = [g.name for g in discover_groups(model, (1, 8, 8))]
    assert names and "pw" not in names  # pw feeds the groups=4 conv
    for criterion in ("l1", "fpgm", "random"):
        policy = Policy.uniform(names, 0.6, criterion)
        pruned = apply_policy(model, policy, (1, 8, 8)).model
        assert pruned(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.slow
def test_grouped_model_searches_end_to_end(capsys, tmp_path):
    code, _, err = run_cli(capsys, "search", "--budget", "1000ms", "--trials", "2", "--out", tmp_path,
                           "--name", "g", "--model", "tests.zoo:grouped_net",
                           "--data", "tests.zoo:small_digits_data", *FAST_FLAGS)  # fmt: skip
    assert code == 0, err
    run = tmp_path / "g"
    report = json.loads((run / "report.json").read_text())
    assert report["budget_met"] is True and report["front"]
    assert report["chosen"]["number"] in report["front"]
    # Only the stem and the depthwise conv are searched: "pw" feeds the groups=4 conv.
    assert [g["name"] for g in report["groups"]] == ["dw"]
    assert all(t["state"] == "COMPLETE" for t in report["trials"])
    # The exported plan removes what the chosen policy asks, and rebuilds a consistent model.
    ratio = report["chosen"]["policy"]["groups"]["dw"]["ratio"]
    removed = json.loads((run / "plan.json").read_text())["removed"]
    assert set(removed) == {"dw"}
    kept = kept_channels(16, ratio, report["chosen"]["policy"]["round_to"])
    assert len(removed["dw"]) == 16 - kept > 0
    model = load_plan(run)
    assert model.c1.out_channels == model.b1.num_features == kept
    assert model.dw.in_channels == model.dw.out_channels == model.dw.groups == kept
    assert model.pw.in_channels == kept and model.pw.out_channels == 16
    assert (model.grouped.in_channels, model.grouped.out_channels, model.grouped.groups) == (16, 16, 4)
    inputs = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(inputs), load_torchscript(run / "model.ts.pt")(inputs), atol=1e-5)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("tests.zoo:float_label_data", "integer class labels"),
        ("tests.zoo:one_hot_label_data", "shape (10,)"),
        ("tests.zoo:string_input_data", "Got tuple of 2 str instead"),
        ("tests.zoo:unlabelled_data", "accepted: an (inputs, labels) tuple"),
    ],
)
def test_labels_and_inputs_of_the_wrong_kind_are_bad_input(capsys, tmp_path, data, fragment):
    code, _, err = run_cli(capsys, "search", "--budget", "2x", "--out", tmp_path, "--model",
                           "tests.zoo:tiny_resnet", "--data", data, "--quiet")  # fmt: skip
    assert code == 2
    assert_one_line_error(err, fragment)


@pytest.mark.slow
def test_warm_start_trials_record_their_params_for_the_sampler(capsys, tmp_path, tiny_flags):
    flags = ["--budget", "1000ms", "--trials", "2", "--out", tmp_path, "--name", "w", *tiny_flags]
    code, _, _ = run_cli(capsys, "search", *flags)
    assert code == 0
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "w" / "study.journal")))
    trials = optuna.load_study(study_name="prunepilot", storage=storage).trials
    # A budget the baseline meets: the warm starts sweep uniform ratios (0.4 and 0.8 of 0.8), and
    # 0.8 with every removable block removed in between.
    assert trials[0].params["stem.0:ratio"] == pytest.approx(0.4)
    assert not trials[0].params["layer1:remove"] and not trials[0].params["layer3:remove"]
    assert trials[1].params["layer3.conv1:ratio"] == pytest.approx(0.8)
    assert trials[1].params["layer1:remove"] and trials[1].params["layer3:remove"]
    for trial in trials:
        recorded = trial.user_attrs["policy"]["groups"]
        assert {name: trial.params[f"{name}:ratio"] for name in recorded} == {
            name: pytest.approx(setting["ratio"]) for name, setting in recorded.items()
        }
        removed = trial.user_attrs["policy"]["removed_blocks"]
        assert [b for b in ("layer1", "layer3") if trial.params[f"{b}:remove"]] == removed


def test_artefacts_are_readable_by_others_and_leave_no_temporary_files(tmp_path):
    target = tmp_path / "report.json"
    write_atomically(target, "{}")
    mode = stat.S_IMODE(os.stat(target).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_an_infinite_learning_rate_is_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "search", "--budget", "2x", "--lr", "inf", "--out", tmp_path)
    assert code == 2
    assert_one_line_error(err, "'lr' parameter of JobSpec (--lr)", "finite")


@pytest.mark.slow
def test_resume_warns_about_flags_it_ignores_and_keeps_the_saved_budget(capsys, tmp_path, tiny_flags):
    assert run_cli(capsys, "search", "--budget", "1000ms", "--trials", "1", "--out", tmp_path, "--name", "r",
                   *tiny_flags)[0] == 0  # fmt: skip
    code, _, err = run_cli(capsys, "search", "--resume", "--name", "r", "--out", tmp_path, "--trials", "2",
                           "--budget", "1ms", "--finetune-steps", "3", "--quiet")  # fmt: skip
    assert code == 0
    assert "--budget, --finetune-steps ignored with --resume" in err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["budget"]["text"] == "1000ms" and len(report["trials"]) == 2


def test_a_ratio_max_off_the_grid_is_rounded_down_onto_it(capsys, tmp_path, tiny_flags):
    code, out, _ = run_cli(
        capsys, "search", "--dry-run", "--ratio-max", "0.83", "--out", tmp_path, *tiny_flags
    )
    assert code == 0
    assert "ratio per group: 0 .. 0.8 step 0.05" in out


@pytest.mark.slow
def test_ctrl_c_during_the_search_exits_130_and_resume_continues(capsys, tmp_path, tiny_flags, monkeypatch):
    import prunepilot.pipeline.search as stage

    real = stage.run_search

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stage, "run_search", interrupted)
    code, _, err = run_cli(capsys, "search", "--budget", "1000ms", "--trials", "2", "--out", tmp_path,
                           "--name", "c", *tiny_flags)  # fmt: skip
    assert code == 130
    assert "--resume --name c" in err and "Traceback" not in err
    monkeypatch.setattr(stage, "run_search", real)
    assert main(["search", "--resume", "--name", "c", "--out", str(tmp_path), "--quiet"]) == 0


@pytest.mark.slow
def test_round_to_choices_from_the_command_line(capsys, tmp_path, tiny_flags):
    # Choices without the default rounding (1): were the flag ignored, every policy would round to 1.
    choices = ["--round-to-choices", "4,8"]
    code, out, err = run_cli(capsys, "search", "--dry-run", "--budget", "1000ms", *choices, "--out", tmp_path,
                             *tiny_flags)  # fmt: skip
    assert code == 0, err
    assert "channel rounding (round_to): one of [4, 8]" in out
    code, _, err = run_cli(capsys, "search", "--budget", "1000ms", "--trials", "3", *choices,
                           "--out", tmp_path, "--name", "rt", *tiny_flags)  # fmt: skip
    assert code == 0, err
    run = tmp_path / "rt"
    report = json.loads((run / "report.json").read_text())
    assert len(report["trials"]) == 3
    assert {t["policy"]["round_to"] for t in report["trials"]} <= {4, 8}
    # The rounding is a parameter of the study, so the sampler chooses it.
    storage = JournalStorage(JournalFileBackend(str(run / "study.journal")))
    trials = optuna.load_study(study_name="prunepilot", storage=storage).trials
    assert [t.params["round_to"] for t in trials] == [t["policy"]["round_to"] for t in report["trials"]]
    # The exported model keeps a multiple of the chosen rounding in every pruned group.
    round_to = json.loads((run / "policy.json").read_text())["round_to"]
    assert round_to in (4, 8)
    channels = {g["name"]: g["channels"] for g in report["groups"]}
    removed = json.loads((run / "plan.json").read_text())["removed"]
    assert any(removed.values())
    for name, indices in removed.items():
        kept = channels[name] - len(indices)
        assert kept % round_to == 0 or kept == channels[name], (name, kept, round_to)
    code, _, err = run_cli(capsys, "search", "--budget", "2x", "--round-to-choices", "0,8", "--out", tmp_path)
    assert code == 2
    assert_one_line_error(err, "'round_to_choices' parameter")
