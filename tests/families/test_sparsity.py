"""Unstructured sparsity on torch.nn.utils.prune: exact counts, folding, masks through a
fine-tune, compressed size and exports of a folded model."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from prunepilot.errors import UsageError
from prunepilot.evaluators import LatencySettings
from prunepilot.evaluators.cost import compressed_size, state_dict_bytes
from prunepilot.export import export_onnx, export_plan, export_torchscript, load_plan
from prunepilot.families.sparsity import (
    apply_sparsity,
    fold_sparsity,
    output_layer_names,
    sparse_targets,
    sparsity_record,
)
from prunepilot.policies import Plan
from prunepilot.training import fine_tune
from tests import zoo

SHAPE = (1, 8, 8)


def _targets(model: nn.Module) -> list:
    return sparse_targets(model, exclude_modules=output_layer_names(model, SHAPE))


def test_targets_are_every_conv_and_linear_weight_but_the_excluded():
    model = zoo.tiny_resnet()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [m for m, _ in sparse_targets(model)] == [*convs, model.fc]
    assert output_layer_names(model, SHAPE) == ("fc",)
    assert [m for m, _ in _targets(model)] == convs
    assert [m for m, _ in sparse_targets(model, exclude_modules=[model.fc])] == convs
    assert {name for _, name in _targets(model)} == {"weight"}


def test_an_output_from_a_functional_op_still_excludes_the_last_layer():
    model = zoo.mlp_logsoftmax()
    assert output_layer_names(model, (64,)) == ("3",)
    assert [m for m, _ in sparse_targets(model, output_layer_names(model, (64,)))] == [model[1]]


def test_tied_weights_and_attention_output_projections_are_left_dense():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 8)
            self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
            self.hidden = nn.Linear(8, 8)
            self.head = nn.Linear(8, 10, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            x = self.embed(tokens)
            return self.head(self.hidden(self.attention(x, x, x)[0]))

    model = Tied()
    assert [m for m, _ in sparse_targets(model)] == [model.hidden]


def test_a_linear_that_never_runs_forward_counts_as_an_output():
    class ReadsWeight(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(4, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(x @ self.inner.weight)

    assert output_layer_names(ReadsWeight(), (4,)) == ("out", "inner")


def test_global_half_zeroes_exactly_torchs_pooled_count():
    model = zoo.tiny_resnet()
    targets = _targets(model)
    total = sum(m.weight.numel() for m, _ in targets)
    zeroed = apply_sparsity(model, 0.5, targets)
    assert zeroed == round(0.5 * total) == sparsity_record(model, targets)["zeros"]
    assert sparsity_record(model, targets)["weights"] == total
    assert int((model.fc.weight == 0).sum()) == 0 and not prune.is_pruned(model.fc)
    shares = [float((m.weight == 0).float().mean()) for m, _ in targets]
    assert min(shares) != max(shares)  # pooled over layers, not layer by layer


def test_the_default_targets_are_all_conv_and_linear_weights():
    model = zoo.tiny_resnet()
    total = sum(m.weight.numel() for m, _ in sparse_targets(model))
    assert apply_sparsity(model, 0.3) == round(0.3 * total)


@pytest.mark.parametrize("amount", [1.2, -0.1, 1.0, float("nan"), True, "0.5", None])
def test_an_amount_out_of_range_is_refused_in_the_one_message_shape(amount):
    model = zoo.tiny_resnet()
    with pytest.raises(UsageError) as raised:
        apply_sparsity(model, amount)
    assert str(raised.value) == (
        f"The 'amount' parameter of apply_sparsity must be in [0, 0.99]. Got {amount!r} instead."
    )
    assert not prune.is_pruned(model)


def test_a_zero_amount_changes_nothing():
    model = zoo.tiny_resnet()
    assert apply_sparsity(model, 0.0) == 0 == apply_sparsity(model, 0)
    assert not prune.is_pruned(model)


def test_folding_leaves_plain_zeroed_weights_and_the_same_outputs():
    model = zoo.tiny_resnet().eval()
    targets = _targets(model)
    apply_sparsity(model, 0.5, targets)
    assert any(key.endswith("_mask") for key in model.state_dict())
    inputs = torch.randn(4, *SHAPE)
    with torch.no_grad():
        before = model(inputs)
    record = sparsity_record(model, targets)
    assert fold_sparsity(model) == len(targets)
    assert not any(prune.is_pruned(m) for m in model.modules())
    assert not any(key.endswith(("_orig", "_mask")) for key in model.state_dict())
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert all(isinstance(m.weight, nn.Parameter) for m, _ in targets)
    assert sparsity_record(model, targets) == record
    with torch.no_grad():
        assert torch.equal(model(inputs), before)
    assert fold_sparsity(model) == 0


def test_zeros_survive_a_fine_tune_while_masks_are_kept(digits):
    model = zoo.tiny_resnet()
    targets = _targets(model)
    zeroed = apply_sparsity(model, 0.5, targets)
    masks = [m.weight_mask.clone() for m, _ in targets]
    originals = [m.weight_orig.detach().clone() for m, _ in targets]
    fine_tune(model, digits[0], steps=5, batch_size=32, lr=1e-2)
    assert any(not torch.equal(o, m.weight_orig) for o, (m, _) in zip(originals, targets))  # it trained
    fold_sparsity(model)
    assert sparsity_record(model, targets)["zeros"] >= zeroed
    for mask, (module, _) in zip(masks, targets):
        assert torch.all(module.weight[mask == 0] == 0)


def test_compressed_state_dict_shrinks_as_the_amount_rises():
    sizes = []
    for amount in (0.0, 0.5, 0.9):
        model = zoo.tiny_resnet()
        apply_sparsity(model, amount, _targets(model))
        fold_sparsity(model)
        sizes.append(compressed_size(state_dict_bytes(model)))
    assert sizes[0] > sizes[1] > sizes[2]


def test_a_folded_model_exports_and_reloads(digits, tmp_path):
    model = zoo.tiny_resnet()
    fine_tune(model, digits[0], steps=10, batch_size=32, lr=3e-3)
    targets = _targets(model)
    apply_sparsity(model, 0.7, targets)
    fold_sparsity(model)
    model.eval()
    inputs = digits[2].tensors[0][:16]
    latency = LatencySettings(batch_size=2, warmup=1, repeats=2)
    assert export_torchscript(model, inputs, tmp_path / "model.ts.pt") <= 1e-5
    assert export_onnx(model, inputs, tmp_path / "model.onnx", latency)["onnx_max_abs_diff"] <= 1e-4
    assert export_plan(model, Plan(), {"factory": "tests.zoo:tiny_resnet"}, SHAPE, inputs, tmp_path) <= 1e-5
    state = torch.load(tmp_path / "weights.pt", map_location="cpu", weights_only=True)
    assert not any(key.endswith(("_orig", "_mask")) for key in state)
    assert int((state["layer2.conv2.weight"] == 0).sum()) == int((model.layer2.conv2.weight == 0).sum()) > 0
    reloaded = load_plan(tmp_path, trust=True)
    assert sparsity_record(reloaded, _targets(reloaded)) == sparsity_record(model, targets)
    again = torch.load(io.BytesIO(state_dict_bytes(model)), weights_only=True)
    assert all(torch.equal(again[key], value) for key, value in model.state_dict().items())
