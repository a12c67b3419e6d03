"""Hugging Face models built from configs: searched end to end, heads pruned whole, exports checked."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

import prunepilot  # noqa: E402
from prunepilot.adapters import LogitsModel  # noqa: E402
from prunepilot.evaluators import count_flops  # noqa: E402
from prunepilot.inputs import InputShape  # noqa: E402
from prunepilot.policies import Policy, apply_plan, apply_policy, discover, head_counts  # noqa: E402
from prunepilot.policies.policy import GroupSetting  # noqa: E402
from tests import hf_models  # noqa: E402
from tests.helpers import run_cli  # noqa: E402

TEXT_SHAPE = InputShape((hf_models.SEQUENCE,), "int64")
QUICK = dict(
    trials=2, finetune_steps=5, final_steps=10, bn_batches=2, latency_repeats=5, workers=0,
    calibration_samples=0, progress=False, log=lambda _: None,
)  # fmt: skip


def test_distilbert_heads_are_one_group_per_layer_and_the_residual_width_is_left_whole():
    found = discover(LogitsModel(hf_models.model("distilbert")), TEXT_SHAPE)
    heads = {g.name: g.heads for g in found.groups if g.heads}
    assert list(heads.values()) == [4, 4] and all(".attention." in name for name in heads)
    assert all(g.channels == 64 for g in found.groups if g.heads)
    assert any("feeding attention" in reason for reason in found.left_whole.values())


def test_an_attention_ratio_removes_whole_heads_and_the_plan_replays_it():
    model = LogitsModel(hf_models.model("distilbert")).eval()
    groups = [g.name for g in discover(model, TEXT_SHAPE).groups]
    policy = Policy.uniform(groups, 0.5, "l1")
    pruned, plan = apply_policy(model, policy, TEXT_SHAPE)
    assert list(head_counts(pruned).values()) == [2, 2]
    for layer in pruned.model.distilbert.transformer.layer:
        assert layer.attention.q_lin.out_features == layer.attention.out_lin.in_features == 2 * 16
        assert layer.ffn.lin1.out_features == 64
    assert all(len(channels) % 16 == 0 for name, channels in plan.channels.items() if "attention" in name)
    tokens = hf_models.text_data()[1].tensors[0][:4]
    with torch.no_grad():
        assert torch.allclose(apply_plan(model, plan, TEXT_SHAPE).eval()(tokens), pruned(tokens), atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", [*hf_models.TEXT, *hf_models.VISION])
def test_a_hugging_face_model_is_searched_end_to_end_and_its_exports_are_checked(name, tmp_path):
    net = hf_models.model(name)
    train, val, test = hf_models.data(name)
    flops = count_flops(LogitsModel(net).eval(), train[0][0][None])
    result = prunepilot.search(
        net, train=train, val=val, test=test, budget=f"{0.8 * flops:.0f}FLOPs", out=str(tmp_path), **QUICK
    )
    assert result.exit_code == 0 and result.budget_met
    final = result.report["final"]
    assert final["export"]["onnx_max_abs_diff"] <= 1e-4
    assert final["export"]["plan_max_abs_diff"] <= 1e-5
    rebuilt = prunepilot.export.load_plan(result.run_dir, base_model=net)
    inputs = torch.stack([test[i][0] for i in range(4)])
    with torch.no_grad():
        assert torch.allclose(rebuilt(inputs), result.model(inputs), atol=1e-5)
    heads = final.get("heads", {})
    assert bool(heads) == (name in ("distilbert", "bert", "vit", "swin", "swinv2"))
    kept = head_counts(result.model)
    assert {name: h["kept"] for name, h in heads.items()} == kept
    assert all(h["kept"] <= h["baseline"] for h in heads.values())
    if heads:
        assert "Attention heads kept" in (result.run_dir / "report.md").read_text()


def test_the_dry_run_of_a_text_model_lists_heads_and_the_width_left_whole(capsys, tmp_path):
    code, out, err = run_cli(capsys, "search", "--model", "tests.hf_models:distilbert", "--data",
                             "tests.hf_models:text_data", "--dry-run", "--out", tmp_path)  # fmt: skip
    assert code == 0, err
    assert out.count("4 heads") == 2
    assert "Left whole (never pruned):" in out and "feeding attention" in out


def _gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    config = hf_models.hf.GPT2Config(
        n_layer=2, n_head=4, n_embd=32, vocab_size=hf_models.VOCAB, n_positions=hf_models.SEQUENCE,
        num_labels=3, pad_token_id=0,
    )  # fmt: skip
    return hf_models.hf.GPT2ForSequenceClassification(config)


def test_gpt2_heads_in_its_fused_conv1d_projection_are_pruned_whole_with_its_cache_on():
    model = LogitsModel(_gpt2()).eval()
    assert model.model.config.use_cache  # the key-value cache prunepilot turns off in its calls
    found = discover(model, TEXT_SHAPE)
    heads = {g.name: g.heads for g in found.groups if g.heads}
    assert heads == {f"model.transformer.h.{i}.attn.c_attn": 4 for i in range(2)}
    assert head_counts(model) == {f"model.transformer.h.{i}.attn": 4 for i in range(2)}
    policy = Policy({"model.transformer.h.0.attn.c_attn": GroupSetting(0.5, "l2")})
    pruned, plan = apply_policy(model, policy, TEXT_SHAPE)
    attention = pruned.model.transformer.h[0].attn
    assert attention.num_heads == 2 and attention.split_size == 16 and attention.c_attn.out_features == 48
    assert attention.c_proj.in_features == 16 and pruned.model.transformer.h[1].attn.num_heads == 4
    tokens = hf_models.text_data()[1].tensors[0][:4]
    with torch.no_grad():
        whole = model(tokens)
        assert torch.allclose(apply_policy(model, Policy({}), TEXT_SHAPE).model(tokens), whole, atol=1e-5)
        assert torch.allclose(apply_plan(model, plan, TEXT_SHAPE)(tokens), pruned(tokens), atol=0)
