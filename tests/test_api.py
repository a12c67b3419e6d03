"""The Python API: ``prunepilot.search`` runs the same job as the CLI, on objects."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import prunepilot
from prunepilot import UsageError
from prunepilot.export import load_plan
from tests import zoo
from tests.helpers import run_cli

pytestmark = pytest.mark.slow

#: JobSpec settings that keep a search short (the CLI's FAST_FLAGS, as keywords).
FAST = dict(
    finetune_steps=10, final_steps=30, bn_batches=2, latency_repeats=3, latency_batch=8, workers=0,
    calibration_samples=8, progress=False,
)  # fmt: skip


@pytest.fixture(scope="module")
def api_run(trained_tiny, tmp_path_factory):
    """One search from Python on the tiny model, with a FLOPs budget of 70%."""
    train, val, test = zoo.small_digits_data()
    flops = prunepilot.evaluators.count_flops(trained_tiny, torch.zeros(1, 1, 8, 8))
    out = tmp_path_factory.mktemp("api")
    lines: list[str] = []
    result = prunepilot.search(
        trained_tiny, train=train, val=val, test=test, budget=f"{0.7 * flops:.0f}FLOPs", trials=4,
        out=str(out), name="py", log=lines.append, **FAST,
    )  # fmt: skip
    return result, flops, lines, (train, val, test)


def test_search_from_python_returns_the_chosen_model_within_budget_and_the_run_files(api_run, trained_tiny):
    result, flops, _, (_, _, test) = api_run
    assert result.exit_code == 0 and result.budget_met
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report == result.report
    chosen = result.model
    assert isinstance(chosen, torch.nn.Module) and chosen is not trained_tiny
    measured = prunepilot.evaluators.count_flops(chosen, torch.zeros(1, 1, 8, 8))
    assert measured == report["final"]["flops"] <= 0.7 * flops
    assert [t["number"] for t in result.front] == report["front"] and result.front
    assert result.policy == prunepilot.Policy.from_dict(report["chosen"]["policy"])
    assert result.policy == prunepilot.Policy.load(result.run_dir / "policy.json")
    for name in ("model.ts.pt", "model.onnx", "plan.json", "weights.pt", "report.html", "config.json"):
        assert (result.run_dir / name).is_file(), name
    inputs = torch.stack([test[i][0] for i in range(8)])
    with torch.no_grad():
        assert torch.allclose(
            chosen(inputs), load_plan(result.run_dir, base_model=trained_tiny)(inputs), atol=1e-5
        )


def test_a_python_plan_cannot_be_rebuilt_without_the_base_model(api_run):
    with pytest.raises(UsageError, match="base_model"):
        load_plan(api_run[0].run_dir)


def _finished(report: dict) -> int:
    return sum(t["state"] in ("COMPLETE", "FAIL") for t in report["trials"])


def test_a_python_run_resumes_from_python_with_its_own_settings_only(api_run, trained_tiny, tmp_path, capsys):
    result, _, _, (train, val, test) = api_run
    shutil.copytree(result.run_dir, tmp_path / "py")  # the shared run stays as it was
    again = dict(
        train=train, val=val, test=test, out=str(tmp_path), name="py", resume=True, log=lambda _: None
    )
    more = prunepilot.search(trained_tiny, **again, trials=5, **FAST)  # the first call's settings: accepted
    assert (_finished(result.report), _finished(more.report)) == (4, 5)
    with pytest.raises(UsageError, match=r"\['seed'\] cannot change when a run is resumed"):
        prunepilot.search(trained_tiny, **again, seed=9)
    with pytest.raises(UsageError, match="cannot change when a run is resumed"):
        prunepilot.search(trained_tiny, **again, budget="3x")
    with pytest.raises(
        UsageError, match=r"searched a .*SmallResNet; got a torch\.nn\.modules\.container\.Sequential"
    ):
        prunepilot.search(torch.nn.Sequential(trained_tiny), **again)
    code, _, err = run_cli(capsys, "search", "--resume", "--out", tmp_path, "--name", "py", "--quiet")
    assert code == 2 and "given in Python" in err and "resume=True" in err


def test_a_command_line_run_is_not_resumed_from_python(trained_tiny, tmp_path, tiny_flags, capsys):
    flags = ["--budget", "1GFLOPs", "--trials", "1", "--out", tmp_path, "--name", "cli"]  # always met
    code, _, _ = run_cli(capsys, "search", *flags, *tiny_flags)
    assert code == 0
    train, val, test = zoo.small_digits_data()
    with pytest.raises(
        UsageError, match="started from the command line; continue it with: prunepilot search --resume"
    ):
        prunepilot.search(
            trained_tiny, train=train, val=val, test=test, out=str(tmp_path), name="cli", resume=True
        )


def test_the_callers_model_is_left_as_it_was(trained_tiny, tmp_path):
    train, val, _ = zoo.small_digits_data()
    model = zoo.tiny_resnet().train()
    model.load_state_dict(trained_tiny.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prunepilot.search(
        model, train=train, val=val, budget="300kFLOPs", dry_run=True, out=str(tmp_path), log=lambda _: None
    )
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_dry_run_without_a_test_split_says_so_and_writes_nothing(trained_tiny, tmp_path):
    train, val, _ = zoo.small_digits_data()
    lines: list[str] = []
    result = prunepilot.search(
        trained_tiny, train=train, val=val, budget="300kFLOPs", dry_run=True, out=str(tmp_path),
        log=lines.append, **FAST,
    )  # fmt: skip
    assert result.exit_code == 0 and result.run_dir is None and result.model is None
    assert any("no test split" in line for line in lines)
    assert any(line.startswith("Search space:") for line in lines)
    assert not any(tmp_path.iterdir())


def test_data_loaders_of_dicts_a_dict_output_and_a_python_loss_are_searched_and_exported(tmp_path):
    net = zoo.dict_output_net()
    train, val, test = zoo.dict_batch_loaders()
    zoo.LOSS_CALLS.clear()
    result = prunepilot.search(
        net, train=train, val=val, test=test, budget="6k params", trials=3, output_key="scores",
        loss=zoo.recording_loss, out=str(tmp_path), log=lambda _: None, **FAST,
    )  # fmt: skip
    assert result.exit_code == 0 and result.budget_met
    assert zoo.LOSS_CALLS and all(isinstance(model, zoo.DictOutputNet) for model, _ in zoo.LOSS_CALLS)
    sizes = {len(batch["labels"]) for _, batch in zoo.LOSS_CALLS}
    assert sizes == {32, 400 % 32}  # the loader's own batches (400 samples, batches of 32)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["loss"] == "tests.zoo:recording_loss" and config["output_key"] == "scores"
    inputs = next(iter(test))["pixel_values"][:8]
    rebuilt = load_plan(result.run_dir, base_model=net)
    with torch.no_grad():
        assert rebuilt(inputs).shape == (8, 10)
        assert torch.allclose(rebuilt(inputs), result.model(inputs), atol=1e-5)
    assert result.report["final"]["export"]["onnx_max_abs_diff"] <= 1e-4


@pytest.mark.ray
@pytest.mark.slow
def test_a_python_search_of_dict_loaders_and_a_lambda_loss_runs_on_ray(tmp_path):
    net = zoo.dict_output_net()
    train, val, test = zoo.dict_batch_loaders()
    result = prunepilot.search(
        net, train=train, val=val, test=test, budget="6k params", trials=3, output_key="scores",
        loss=lambda model, batch: torch.nn.functional.cross_entropy(
            model(batch["pixel_values"])["scores"], batch["labels"]
        ), out=str(tmp_path), log=lambda _: None, **{**FAST, "workers": 2},
    )  # fmt: skip
    assert result.exit_code == 0
    assert [t["state"] for t in result.report["trials"]] == ["COMPLETE"] * 3
    assert result.report["trial_settings"]["loss"]["name"].endswith("_runs_on_ray.<locals>.<lambda>")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tirals": 3}, "Unknown setting(s) ['tirals']"),
        ({"trials": 0}, "'trials' parameter of JobSpec"),
        ({"example_input": torch.zeros(1, 3, 8, 8)}, "but example_input is (3, 8, 8)"),
        ({"budget": "fast"}, "Cannot read the budget"),
        ({"model": "not a model"}, "must be a torch.nn.Module"),
        ({"resume": True}, "'name' parameter of search must name the run"),
        ({"model": zoo.DictOutputNet(), "output_key": "logits"}, "['hidden', 'scores']); set output_key"),
        ({"loss": "tests.zoo:float_loss"}, "must return a scalar tensor that carries gradients"),
        ({"label_key": ""}, "'label_key' parameter of JobSpec"),
        ({"screen": "no"}, "The 'screen' parameter of JobSpec must be true or false. Got 'no' instead."),
        # From Python the keyword is named, not the flag:
        ({"budget": "10FLOPs"}, "loosen the budget or raise ratio_max (at most 0.95)"),
    ],
)
def test_bad_arguments_are_refused_with_one_clear_error(trained_tiny, tmp_path, kwargs, message):
    train, val, test = zoo.small_digits_data()
    arguments = {"train": train, "val": val, "test": test, "budget": "2x", "out": str(tmp_path), **FAST}
    model = kwargs.pop("model", trained_tiny)
    with pytest.raises(UsageError) as caught:
        prunepilot.search(model, **{**arguments, **kwargs})
    assert message in str(caught.value)
    assert not any(tmp_path.iterdir())  # nothing was written
