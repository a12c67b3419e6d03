"""The dry run is the search's gate: for every model of the test zoo that stretches discovery
(channel shuffle, fused and torch's own attention, grouped convolutions, a text encoder;
the small ResNet's runs are everywhere else), a budget the dry run accepts is never refused by the
search that follows (it ends with a model or with exit 3, not with bad input), and a budget the dry
run refuses is refused by the search the same way."""

from __future__ import annotations

import importlib

import pytest
import torch

from prunepilot.evaluators import count_flops
from tests.helpers import FAST_FLAGS, run_cli

pytestmark = pytest.mark.slow

#: (model factory, data factory, one sample's shape)
ZOO = [
    ("tests.zoo:fused_qkv_vit", "tests.zoo:digits16_data", (1, 16, 16)),
    ("tests.zoo:free_heads_vit", "tests.zoo:digits16_data", (1, 16, 16)),
    ("tests.zoo:torchvision_vit", "tests.zoo:digits16_data", (1, 16, 16)),
    ("tests.zoo:grouped_net", "tests.zoo:small_digits_data", (1, 8, 8)),
    ("tests.zoo:shufflenet_v2", "tests.zoo:digits16_data", (1, 16, 16)),
    ("tests.zoo:shufflenet_v2_module_shuffle", "tests.zoo:digits16_data", (1, 16, 16)),
    ("tests.hf_models:distilbert", "tests.hf_models:text_data", None),
]


def _flops(factory: str, shape: tuple[int, ...] | None) -> int:
    module, name = factory.split(":")
    model = getattr(importlib.import_module(module), name)().eval()
    example = torch.randn(1, *shape) if shape else torch.zeros(1, 32, dtype=torch.long)
    output = model(example)
    return count_flops(model, example) if isinstance(output, torch.Tensor) else count_flops(
        lambda x: model(x).logits, example  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(("model", "data", "shape"), ZOO, ids=[m.split(":")[1] for m, _, _ in ZOO])
def test_a_budget_the_dry_run_accepts_is_never_refused_by_the_search(capsys, tmp_path, model, data, shape):
    budget = f"{0.9 * _flops(model, shape) / 1e3:.1f}kFLOPs"  # binding: the model must shrink
    flags = ["--model", model, "--data", data, "--budget", budget, "--out", tmp_path, *FAST_FLAGS]
    code, _, err = run_cli(capsys, "search", "--dry-run", *flags)
    assert code == 0, err
    code, _, err = run_cli(capsys, "search", "--trials", "1", "--name", "r", *flags)
    assert code in (0, 3), err  # a model, or none within the budget: never refused as bad input
    assert (tmp_path / "r" / "report.json").is_file()


def test_a_budget_the_dry_run_refuses_the_search_refuses(capsys, tmp_path):
    flags = ["--model", "tests.zoo:free_heads_vit", "--data", "tests.zoo:digits16_data", "--budget", "1FLOPs",
             "--out", tmp_path, *FAST_FLAGS]  # fmt: skip
    for command in (["--dry-run"], ["--trials", "1"]):
        code, _, err = run_cli(capsys, "search", *command, *flags)
        assert code == 2 and "cannot be met" in err
    assert not any(tmp_path.iterdir())
