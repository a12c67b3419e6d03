import pytest
import torch
from torch import nn

from prunepilot import Policy, UsageError, apply_policy, discover_groups
from prunepilot.evaluators import count_params
from prunepilot.policies import GroupSetting, criterion_names
from tests import zoo

SHAPE = (1, 8, 8)


def _batches(digits, n=2):
    train = digits[0]
    return [
        (train.tensors[0][i * 16 : (i + 1) * 16], train.tensors[1][i * 16 : (i + 1) * 16]) for i in range(n)
    ]


def _conv_channels(model: nn.Module) -> dict[str, int]:
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("criterion", criterion_names())
def test_every_criterion_prunes_the_residual_model_into_a_working_smaller_one(
    criterion, trained_tiny, digits
):
    groups = discover_groups(trained_tiny, SHAPE)
    policy = Policy.uniform([g.name for g in groups], 0.5, criterion)
    before = {k: v.clone() for k, v in trained_tiny.state_dict().items()}

    pruned = apply_policy(trained_tiny, policy, SHAPE, gradient_batches=_batches(digits)).model

    x = digits[1].tensors[0][:5]
    assert pruned(x).shape == trained_tiny(x).shape == (5, 10)
    assert count_params(pruned) < 0.4 * count_params(trained_tiny)
    channels = _conv_channels(pruned)
    # Residual coupling: the convolutions whose outputs are added keep equal widths.
    assert channels["stem.0"] == channels["layer1.conv2"] == 4
    assert channels["layer2.conv2"] == channels["layer2.shortcut.0"] == channels["layer3.conv2"] == 8
    assert pruned.fc.out_features == 10  # the classifier's output is never pruned
    # The base model is untouched.
    after = trained_tiny.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert _conv_channels(trained_tiny)["stem.0"] == 8


def test_criteria_choose_different_channels(trained_tiny, digits):
    groups = [g.name for g in discover_groups(trained_tiny, SHAPE)]
    kept = {}
    for criterion in ("l1", "random"):
        pruned = apply_policy(trained_tiny, Policy.uniform(groups, 0.5, criterion), SHAPE, seed=3).model
        kept[criterion] = pruned.layer1.conv1.weight.detach().clone()
    assert not torch.equal(kept["l1"], kept["random"])


def test_l1_keeps_the_largest_filters(trained_tiny):
    pruned = apply_policy(trained_tiny, Policy({"layer1.conv1": GroupSetting(0.5, "l1")}), SHAPE).model
    conv = trained_tiny.layer1.conv1.weight.detach()
    bn = trained_tiny.layer1.bn1.weight.detach()
    # Group L1 covers the conv, its BatchNorm and the next conv's input slice; the kept filters
    # must be among the original ones.
    kept = pruned.layer1.conv1.weight.detach()
    matches = [any(torch.equal(k, c) for c in conv) for k in kept]
    assert all(matches) and kept.shape[0] == 4 and bn.shape[0] == 8


def test_ratio_zero_and_unnamed_groups_leave_the_model_whole(trained_tiny):
    pruned = apply_policy(trained_tiny, Policy({"stem.0": GroupSetting(0.0)}), SHAPE).model
    assert count_params(pruned) == count_params(trained_tiny)


def test_round_to_rounds_kept_channels_up(trained_tiny):
    pruned = apply_policy(trained_tiny, Policy({"layer2.conv1": GroupSetting(0.8)}, round_to=4), SHAPE).model
    assert pruned.layer2.conv1.out_channels == 4  # 16 * 0.2 = 3.2 -> 4


def test_policy_naming_an_unknown_group_is_refused(trained_tiny):
    with pytest.raises(UsageError, match="does not have"):
        apply_policy(trained_tiny, Policy({"no.such.layer": GroupSetting(0.5)}), SHAPE)


def test_taylor_without_training_batches_is_refused(trained_tiny):
    with pytest.raises(UsageError, match="training batches"):
        apply_policy(trained_tiny, Policy({"stem.0": GroupSetting(0.5, "taylor")}), SHAPE)


def test_a_model_without_prunable_layers_is_reported():
    with pytest.raises(UsageError, match="no prunable group"):
        discover_groups(zoo.nothing_to_prune(), SHAPE)
