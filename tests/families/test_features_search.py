"""Input-feature pruning in the search: the policy field, the space, the cut model and its plan,
and a search on the tabular task whose exports take the kept features only."""

import json

import onnxruntime
import optuna
import pytest
import torch

from prunepilot.errors import UsageError
from prunepilot.export import load_plan
from prunepilot.families.features import KeptFeatures
from prunepilot.policies import Policy, apply_plan, apply_policy, discover_groups
from prunepilot.search import SearchSpace
from prunepilot.tasks.tabular import tabular_mlp
from tests.helpers import assert_one_line_error, run_cli

SHAPE = (30,)


def test_a_policy_keeps_its_features_through_json_and_the_space():
    model = tabular_mlp()
    order = tuple(reversed(range(30)))
    space = SearchSpace(tuple(discover_groups(model, SHAPE)), feature_order=order, input_ratio_high=0.8)
    policy = Policy.from_dict({**space.uniform(0.25).to_dict(), "input_features": [29, 28, 27, 26, 25]})
    assert policy.input_features == (25, 26, 27, 28, 29) and Policy.from_json(policy.to_json()) == policy
    assert "input_features" not in space.uniform(0.25).to_dict()
    assert space.kept_features(0.5) == tuple(range(15, 30))  # the best ranked: the last indices here
    assert space.clamp(policy).input_features == (24, 25, 26, 27, 28, 29)  # 0.8 of 30 dropped at most
    suggested = space.suggest(optuna.create_study().ask())
    assert suggested.input_features is None or set(suggested.input_features) <= set(range(30))
    with pytest.raises(UsageError, match="'input_features' field of a policy"):
        Policy.from_dict({"groups": {}, "input_features": [1, 1]})


def test_the_cut_model_and_its_plan_take_the_kept_features():
    torch.manual_seed(0)
    model = tabular_mlp().eval()
    groups = [g.name for g in discover_groups(model, SHAPE)]
    policy = Policy(Policy.uniform(groups, 0.5).groups, input_features=(0, 3, 5, 7, 11, 29))
    pruned, plan = apply_policy(model, policy, SHAPE)
    assert isinstance(pruned, KeptFeatures) and plan.input_features == policy.input_features
    inputs = torch.randn(5, 30)
    rebuilt = apply_plan(model, plan, SHAPE)
    rebuilt.load_state_dict(pruned.state_dict())
    with torch.no_grad():
        assert torch.allclose(rebuilt(inputs), pruned(inputs))
        assert torch.allclose(pruned.inner(inputs[:, list(policy.input_features)]), pruned(inputs))


def test_a_tabular_search_keeps_few_features_and_ships_a_model_taking_only_those(capsys, tmp_path):
    code, out, _ = run_cli(
        capsys, "search", "--task", "tabular", "--budget", "4kFLOPs", "--input-features", "--trials", "6",
        "--out", tmp_path, "--name", "t", "--quiet", "--workers", "0", "--final-steps", "100",
        "--promotion-share", "0",
    )  # fmt: skip
    assert code == 0, out
    report = json.loads((tmp_path / "t" / "report.json").read_text())
    assert report["features"]["method"] == "mutual_info" and len(report["features"]["order"]) == 30
    assert any((t["policy"] or {}).get("input_features") for t in report["trials"])
    kept = report["final"].get("input_features")
    if kept is None:  # the chosen policy kept every feature: exports take all 30
        assert report["final"]["export"]["input_shape"] == [30]
        return
    count = kept["kept"]
    assert kept["of"] == 30 and report["final"]["export"]["input_shape"] == [count]
    session = onnxruntime.InferenceSession(str(tmp_path / "t" / "model.onnx"))
    assert session.get_inputs()[0].shape[-1] == count
    reloaded = load_plan(tmp_path / "t")
    scripted = torch.jit.load(str(tmp_path / "t" / "model.ts.pt"))
    inputs = torch.randn(4, count)
    with torch.no_grad():
        assert torch.allclose(reloaded(inputs), scripted(inputs), atol=1e-5)
    assert json.loads((tmp_path / "t" / "plan.json").read_text())["input_features"] == kept["indices"]


def test_input_features_need_flat_inputs_feeding_a_linear(capsys, tmp_path, tiny_flags):
    code, _, err = run_cli(
        capsys, "search", "--budget", "2x", "--input-features", "--out", tmp_path, *tiny_flags
    )
    assert code == 2
    assert_one_line_error(err, "--input-features needs a model whose input is flat features", "(1, 8, 8)")
    code, _, err = run_cli(capsys, "search", "--budget", "2x", "--input-features", "--loss",
                           "tests.zoo:float_loss", "--out", tmp_path)  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "'input_features'", "false with --loss")
