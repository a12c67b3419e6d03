"""Removable blocks: found by what they compute, removed whole by a policy, replayed by a plan."""

import pytest
import torch
from torch import nn

from prunepilot import Policy, UsageError, apply_policy
from prunepilot.evaluators import count_flops
from prunepilot.export import export_plan, load_plan
from prunepilot.inputs import InputShape
from prunepilot.policies import GroupSetting, apply_plan, discover_blocks, remove_blocks
from tests import zoo

SHAPE = (1, 8, 8)


class _PreActBlock(nn.Module):
    """``x + f(x)`` with no activation after the sum (a transformer's or a pre-activation
    ResNet's block)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.linear = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(self.norm(x))


class _Scaled(nn.Module):
    """Same shape in and out, but no shortcut: removing it is not the identity."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x))


class _Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.stage = nn.Sequential(_PreActBlock(16), _PreActBlock(16))
        self.plain = _Scaled(16)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.plain(self.stage(self.inp(x))))


def test_the_residual_blocks_with_an_identity_shortcut_are_found(trained_tiny):
    # layer2 has a projection shortcut (stride 2, wider): removing it would change the shapes.
    assert discover_blocks(trained_tiny, SHAPE) == ["layer1", "layer3"]


def test_only_the_innermost_identity_blocks_count_and_plain_layers_never():
    # The stage of two blocks is the identity when zeroed too, but it is removed by removing both;
    # the plain layer and single layers of the same width are not blocks.
    assert discover_blocks(_Mixed(), (8,)) == ["stage.0", "stage.1"]


def test_a_model_without_shortcuts_has_no_removable_block():
    assert discover_blocks(zoo.token_net(), InputShape((12,), "int64")) == []


class _Odd(nn.Module):
    """Same-shape layers that are no blocks: one fed zeros, one called twice, one given a keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.zeroed_input = nn.Linear(8, 8)
        self.shared = _PreActBlock(8)
        self.keyword = _Keyword(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zeros = self.zeroed_input(x * 0)
        shared = self.shared(self.shared(x))
        return self.head(zeros + shared + self.keyword(x, scale=2.0))


class _Keyword(_PreActBlock):
    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:  # noqa: D102
        return x + scale * self.linear(self.norm(x))


def test_layers_fed_zeros_called_twice_or_given_keywords_are_not_taken_for_blocks():
    assert discover_blocks(_Odd(), (8,)) == []


def test_a_policy_removes_blocks_and_prunes_what_is_left(trained_tiny, digits):
    policy = Policy(
        {"stem.0": GroupSetting(0.5), "layer3.conv1": GroupSetting(0.5), "layer1.conv1": GroupSetting(0.25)},
        removed_blocks=("layer3",),
    )
    pruned = apply_policy(trained_tiny, policy, SHAPE).model
    assert isinstance(pruned.layer3, nn.Identity)
    assert isinstance(trained_tiny.layer3, nn.Module) and not isinstance(trained_tiny.layer3, nn.Identity)
    assert pruned.stem[0].out_channels == 4 and pruned.layer1.conv1.out_channels == 6
    x = digits[1].tensors[0][:5]
    assert pruned(x).shape == (5, 10)
    sample = x[:1]
    channels_only = apply_policy(trained_tiny, Policy(dict(policy.groups)), SHAPE).model
    assert count_flops(pruned, sample) < count_flops(channels_only, sample)


def test_a_policy_that_removes_a_module_the_model_lacks_is_refused(trained_tiny):
    with pytest.raises(UsageError, match="no module of that name"):
        apply_policy(trained_tiny, Policy({}, removed_blocks=("layer9",)), SHAPE)


def test_removing_a_module_that_changes_the_output_shape_is_refused(trained_tiny):
    with pytest.raises(UsageError, match=r"changes the model's output shape from \(2, 10\)"):
        apply_policy(trained_tiny, Policy({}, removed_blocks=("fc",)), SHAPE)


def test_a_group_named_after_a_removed_block_keeps_its_name_and_its_ratio():
    # The residual stream of x + f(x) blocks is named after the last block's layer.
    model = _Mixed()
    stream = "stage.1.linear"
    policy = Policy(
        {stream: GroupSetting(0.5), "plain.linear": GroupSetting(0.25)}, removed_blocks=("stage.1",)
    )
    pruned, plan = apply_policy(model, policy, (8,))
    assert isinstance(pruned.stage[1], nn.Identity)
    assert pruned.inp.out_features == pruned.stage[0].linear.out_features == 8  # the stream, halved
    assert pruned.plain.linear.out_features == 12
    assert sorted(plan.channels) == ["plain.linear", stream] and len(plan.channels[stream]) == 8
    assert plan.removed_blocks == ("stage.1",)
    replayed = apply_plan(model, plan, (8,))
    with torch.no_grad():
        x = torch.randn(3, 8)
        assert torch.allclose(replayed(x), pruned(x))


def test_the_plan_replays_removed_blocks_from_the_original_class(trained_tiny, digits, tmp_path):
    policy = Policy({"layer2.conv1": GroupSetting(0.5)}, removed_blocks=("layer1", "layer3"))
    pruned, plan = apply_policy(trained_tiny, policy, SHAPE)
    inputs = digits[2].tensors[0][:16]
    difference = export_plan(pruned, plan, {"factory": "tests.zoo:tiny_resnet"}, SHAPE, inputs, tmp_path)
    assert difference <= 1e-5
    plan = (tmp_path / "plan.json").read_text()
    assert '"removed_blocks": [\n  "layer1",\n  "layer3"\n ]' in plan
    rebuilt = load_plan(tmp_path, trust=True)
    assert isinstance(rebuilt.layer1, nn.Identity) and isinstance(rebuilt.layer3, nn.Identity)
    with torch.no_grad():
        assert torch.allclose(rebuilt(inputs), pruned(inputs), atol=1e-6)


def test_remove_blocks_replaces_modules_inside_containers():
    model = _Mixed()
    remove_blocks(model, ["stage.1"])
    assert isinstance(model.stage[1], nn.Identity) and isinstance(model.stage[0], _PreActBlock)
    assert model(torch.zeros(2, 8)).shape == (2, 3)


class _PostNormBlock(nn.Module):
    """``norm(x + f(x))``: a shortcut, but the norm after the sum makes removing it no identity."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.linear(x))


class _TinyActivations(nn.Module):
    """A BatchNorm and a 1x1 convolution fed activations around 1e-8 (as in a randomly initialised
    deep CNN): zeroed, each outputs zeros, within an absolute 1e-6 of such inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.pointwise = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.conv.weight.mul_(1e-8)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pointwise(self.norm(self.conv(x))).mean((2, 3)))


def test_pre_norm_blocks_qualify_and_post_norm_blocks_do_not():
    model = nn.Sequential(nn.Linear(8, 16), _PreActBlock(16), _PostNormBlock(16), nn.Linear(16, 2))
    assert discover_blocks(model, (8,)) == ["1"]


def test_layers_fed_tiny_activations_are_not_taken_for_the_identity():
    # The identity is judged relative to the input's scale; a norm layer is never a block alone.
    assert discover_blocks(_TinyActivations(), SHAPE) == []
