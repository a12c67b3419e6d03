"""nn.MultiheadAttention split into query, key and value projections: it computes what the fused
module computes, and its heads are then pruned whole like any other attention's."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunepilot.policies import Policy, apply_plan, apply_policy, discover
from prunepilot.policies.policy import GroupSetting
from prunepilot.policies.split_attention import SplitAttention, split_attention
from tests import zoo

SHAPE = (1, 16, 16)


def _both(module: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``module`` and its split copy (each held by a parent, as in a model)."""
    holder = nn.ModuleDict({"module": module})
    split = copy.deepcopy(holder)
    split_attention(split)
    return module.eval(), split["module"].eval()


@pytest.mark.parametrize("batch_first", [True, False])
def test_split_attention_computes_what_the_fused_module_computes(batch_first):
    torch.manual_seed(0)
    fused, split = _both(nn.MultiheadAttention(16, 4, batch_first=batch_first))
    assert isinstance(split, SplitAttention)
    x = torch.randn(3, 5, 16)  # (batch, length) or (length, batch)
    batch, length = (3, 5) if batch_first else (5, 3)
    padding = torch.zeros(batch, length, dtype=torch.bool)
    padding[0, -2:] = True
    causal = torch.ones(length, length, dtype=torch.bool).triu(1)
    calls = [
        {},
        {"key_padding_mask": padding},
        {"key_padding_mask": padding, "attn_mask": causal, "need_weights": False},
        {"attn_mask": causal.float().masked_fill(causal, -1e9), "average_attn_weights": False},
    ]
    with torch.no_grad():
        for kwargs in calls:
            (out, weights), (split_out, split_weights) = fused(x, x, x, **kwargs), split(x, x, x, **kwargs)
            assert torch.allclose(out, split_out, atol=1e-6), kwargs
            assert (weights is None) == (split_weights is None)
            assert weights is None or torch.allclose(weights, split_weights, atol=1e-6)
        assert torch.allclose(fused(x[0], x[0], x[0])[0], split(x[0], x[0], x[0])[0], atol=1e-6)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_a_transformer_encoder_with_a_padding_mask_computes_the_same_on_its_tokens():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    fused, split = _both(nn.TransformerEncoder(layer, 2, enable_nested_tensor=True))
    assert isinstance(split.layers[0].self_attn, SplitAttention)
    x, padding = torch.randn(3, 5, 16), torch.zeros(3, 5, dtype=torch.bool)
    padding[0, 3:] = True
    with torch.no_grad():
        out, split_out = fused(x, src_key_padding_mask=padding), split(x, src_key_padding_mask=padding)
    assert torch.allclose(out[~padding], split_out[~padding], atol=1e-5)  # padded positions: undefined


def test_a_module_with_learned_key_and_value_biases_is_left_as_it_was():
    model = nn.Sequential()
    model.add_module("attention", nn.MultiheadAttention(8, 2, add_bias_kv=True))
    assert "add_bias_kv" in split_attention(model)["attention"]
    assert isinstance(model.attention, nn.MultiheadAttention)


def test_heads_of_nn_multihead_attention_are_pruned_whole_and_the_plan_replays_them():
    model, inputs = zoo.torchvision_vit().eval(), torch.randn(3, *SHAPE)
    found = discover(model, SHAPE)
    heads = {g.name: g.heads for g in found.groups if g.heads}
    assert heads == {"layers.0.self_attn.v_proj": 4, "layers.1.self_attn.v_proj": 4}
    assert not any("MultiheadAttention" in reason for reason in found.left_whole.values())
    pruned = apply_policy(model, Policy({"layers.0.self_attn.v_proj": GroupSetting(0.5, "l1")}), SHAPE)
    attention = pruned.model.layers[0].self_attn
    assert attention.num_heads == 2 and attention.q_proj.out_features == 16
    assert attention.out_proj.in_features == 16 and attention.out_proj.out_features == 32
    assert pruned.model.layers[1].self_attn.num_heads == 4
    replayed = apply_plan(model, pruned.plan, SHAPE)
    replayed.load_state_dict(pruned.model.state_dict())
    with torch.no_grad():
        assert pruned.model(inputs).shape == model(inputs).shape
        assert torch.allclose(replayed(inputs), pruned.model(inputs))
