"""Unstructured sparsity in the search: the policy field, the space, the size measure, and a search
under a size budget whose chosen model ships its zeros."""

import json

import optuna
import pytest
import torch

from prunepilot.errors import UsageError
from prunepilot.families.sparsity import output_layer_names, sparse_targets, sparsity_record
from prunepilot.policies import Policy, apply_policy, discover_groups
from prunepilot.search import SearchSpace
from prunepilot.search.calibration import structure_only
from prunepilot.search.screen import _toward_low, _toward_max
from prunepilot.trial import TrialSettings, deploy, prune_and_train
from tests.helpers import assert_one_line_error, run_cli

SHAPE = (1, 8, 8)


def test_a_policy_keeps_its_sparsity_through_json_and_the_search_space(trained_tiny):
    space = SearchSpace(tuple(discover_groups(trained_tiny, SHAPE)), sparsity_high=0.9)
    policy = Policy.from_dict({**space.uniform(0.3).to_dict(), "sparsity": 0.55})
    assert Policy.from_json(policy.to_json()) == policy and "sparsity" in policy.describe()
    assert "sparsity" not in space.uniform(0.3).to_dict()  # a dense policy reads as before
    assert space.clamp(policy).sparsity == 0.55
    for moved in (_toward_low(policy, space, 0.5), _toward_max(policy, space, 0.5), structure_only(policy)):
        assert moved.sparsity == 0.55
    study = optuna.create_study()
    suggested = space.suggest(study.ask())
    assert 0.0 <= suggested.sparsity <= 0.9
    assert space.params_of(policy)["sparsity"] == 0.55
    with pytest.raises(UsageError, match="The 'sparsity' field of a policy must be a number in"):
        Policy.from_dict({"groups": {}, "sparsity": 1.5})


def test_pruned_weights_stay_zero_through_the_fine_tune_and_only_zlib_sizes_see_them(trained_tiny, digits):
    policy = Policy.uniform([g.name for g in discover_groups(trained_tiny, SHAPE)], 0.25, "l1")
    sparse = Policy(policy.groups, sparsity=0.6)
    folded = apply_policy(trained_tiny, sparse, SHAPE).model
    assert not any(k.endswith(("_orig", "_mask")) for k in folded.state_dict())
    targets = sparse_targets(folded, output_layer_names(folded, SHAPE))
    record = sparsity_record(folded, targets)
    assert record["zeros"] == round(0.6 * record["weights"])
    settings = TrialSettings(finetune_steps=5, batch_size=32, bn_batches=2)
    trained, _ = prune_and_train(trained_tiny, digits[0], SHAPE, sparse, settings)
    assert not any(k.endswith(("_orig", "_mask")) for k in trained.state_dict())
    after = sparsity_record(trained, sparse_targets(trained, output_layer_names(trained, SHAPE)))
    assert after["zeros"] >= record["zeros"]  # the fine-tune revived none
    dense, _ = prune_and_train(trained_tiny, digits[0], SHAPE, policy, settings)
    saved = [deploy(m, digits[0], SHAPE, settings).size_bytes for m in (dense, trained)]
    zlib = TrialSettings(size_measure="zlib")
    zipped = [deploy(m, digits[0], SHAPE, zlib).size_bytes for m in (dense, trained)]
    assert saved[0] == saved[1] and zipped[1] < 0.8 * zipped[0]
    with pytest.raises(UsageError, match="'size_measure' parameter of TrialSettings"):
        TrialSettings(size_measure="gzip")


def test_a_search_under_a_size_budget_with_sparsity_ships_its_zeros(capsys, tmp_path, tiny_flags):
    code, _, _ = run_cli(capsys, "search", "--budget", "10MB", "--trials", "1", "--out", tmp_path,
                         "--name", "b", *tiny_flags)  # fmt: skip
    assert code == 0
    dense_zlib = json.loads((tmp_path / "b" / "report.json").read_text())["baseline"]["size_bytes"]
    budget = f"{int(0.5 * dense_zlib)}B"
    code, out, _ = run_cli(capsys, "search", "--budget", budget, "--trials", "4", "--out", tmp_path, "--name",
                           "s", "--sparsity", "global", *tiny_flags)  # fmt: skip
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert report["budget"]["size_measure"] == "zlib"
    assert report["baseline"]["size_bytes"] < dense_zlib * 1.01  # the baseline counted the same way
    assert code == 0, out
    final = report["final"]
    assert final["size_bytes"] <= int(0.5 * dense_zlib)
    if "sparsity" in final:  # the chosen policy zeroed weights: they ship in weights.pt
        weights = torch.load(tmp_path / "s" / "weights.pt", weights_only=True)
        zeros = sum(int((v == 0).sum()) for k, v in weights.items() if k.endswith("weight"))
        assert zeros >= final["sparsity"]["zeros"] > 0
    assert any((t["policy"] or {}).get("sparsity", 0) > 0 for t in report["trials"])


def test_sparsity_without_a_size_budget_is_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "search", "--budget", "30ms", "--sparsity", "global", "--out", tmp_path)
    assert code == 2
    assert_one_line_error(err, "'sparsity'", "unless the budget bounds size")
