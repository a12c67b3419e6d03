"""Heads of a fused qkv projection (timm's layout): found, pruned whole with the head count
following, replayed by the plan; a layout read wrong or a forward that cannot lose heads is left
whole with the reason."""

from __future__ import annotations

import torch

from prunepilot.policies import Policy, apply_plan, apply_policy, discover
from prunepilot.policies.heads import find_attention
from prunepilot.policies.policy import GroupSetting
from prunepilot.policies.rewrites import HeadFreeAttention
from tests import zoo

SHAPE = (1, 16, 16)


def test_a_fused_projection_is_an_attention_module_whose_heads_span_its_three_parts():
    attention = find_attention(zoo.free_heads_vit())
    assert [a.name for a in attention] == ["blocks.0.attn", "blocks.1.attn"]
    first = attention[0]
    assert first.fused and first.heads == 4 and first.head_dim == 8 and first.channels_per_head == 24
    assert first.channels_of([1]) == [*range(8, 16), *range(40, 48), *range(72, 80)]
    assert {first.head_of(c) for c in first.channels_of([1])} == {1}


def test_heads_of_a_fused_projection_are_pruned_whole_and_the_plan_replays_them():
    model, inputs = zoo.free_heads_vit().eval(), torch.randn(3, *SHAPE)
    found = discover(model, SHAPE)
    heads = {g.name: g.heads for g in found.groups if g.heads}
    assert heads == {"blocks.0.attn.qkv": 4, "blocks.1.attn.qkv": 4}
    policy = Policy({"blocks.0.attn.qkv": GroupSetting(0.5, "l2")})
    pruned = apply_policy(model, policy, SHAPE)
    attention = pruned.model.blocks[0].attn
    assert attention.num_heads == 2 and attention.qkv.out_features == 48 and attention.proj.in_features == 16
    assert pruned.model.blocks[1].attn.num_heads == 4  # the other layer is left as it was
    replayed = apply_plan(model, pruned.plan, SHAPE)
    replayed.load_state_dict(pruned.model.state_dict())
    with torch.no_grad():
        assert torch.allclose(replayed(inputs), pruned.model(inputs))


def test_a_layout_read_wrong_and_a_forward_tied_to_the_width_leave_the_heads_whole():
    misread = discover(zoo.per_head_qkv_vit(), SHAPE).left_whole["blocks.0.attn.qkv"]
    assert misread.startswith("its heads are not laid out as its projections read them")
    tied = discover(zoo.scaled_qkv_vit(), SHAPE).left_whole["blocks.0.attn.qkv"]
    assert "reshape(B, N, -1) lets heads go" in tied


def test_timm_attention_tied_to_the_input_width_is_rewritten_and_loses_heads_computing_the_same():
    model, inputs = zoo.fused_qkv_vit().eval(), torch.randn(3, *SHAPE)
    found = discover(model, SHAPE)
    heads = {g.name: g.heads for g in found.groups if g.heads}
    assert heads == {"blocks.0.attn.qkv": 4, "blocks.1.attn.qkv": 4}
    unpruned = apply_policy(model, Policy({}), SHAPE).model
    assert isinstance(unpruned.blocks[0].attn, HeadFreeAttention)
    with torch.no_grad():
        assert torch.allclose(unpruned(inputs), model(inputs), atol=1e-5)
    pruned = apply_policy(model, Policy({"blocks.1.attn.qkv": GroupSetting(0.75, "l1")}), SHAPE)
    assert pruned.model.blocks[1].attn.num_heads == 1 and pruned.model.blocks[1].attn.proj.in_features == 8
    with torch.no_grad():
        assert pruned.model(inputs).shape == (3, 10)


def test_a_timm_swin_loses_heads_with_their_relative_position_bias_columns_and_the_plan_replays_them():
    model, inputs = zoo.timm_swin().eval(), torch.randn(3, *SHAPE)
    found = discover(model, SHAPE)
    assert {g.name: g.heads for g in found.groups if g.heads}["stage2.0.attn.qkv"] == 4
    pruned = apply_policy(model, Policy({"stage2.0.attn.qkv": GroupSetting(0.5, "l1")}), SHAPE)
    attention = pruned.model.stage2[0].attn
    assert attention.num_heads == 2 and attention.relative_position_bias_table.shape == (9, 2)
    replayed = apply_plan(model, pruned.plan, SHAPE)
    replayed.load_state_dict(pruned.model.state_dict())
    with torch.no_grad():
        assert torch.allclose(replayed(inputs), pruned.model(inputs))
