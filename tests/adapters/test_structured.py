"""Structured outputs: packed into one tensor a row a sample, and given back as they were."""

from __future__ import annotations

import pytest
import torch

import prunepilot
from prunepilot.adapters.outputs import is_structured
from prunepilot.adapters.structured import OutputLayout
from prunepilot.errors import UsageError
from tests import zoo


def _output(batch: int) -> dict:
    return {"boxes": torch.randn(batch, 5, 4), "scales": [torch.randn(batch, 3), (torch.randn(batch),)]}


def test_a_nested_output_packs_into_one_row_a_sample_and_unpacks_to_what_it_was():
    output = _output(6)
    layout = OutputLayout.of(output)
    packed = layout.pack(output)
    assert packed.shape == (6, 5 * 4 + 3 + 1)
    again = layout.unpack(packed)
    assert torch.equal(again["boxes"], output["boxes"])
    assert torch.equal(again["scales"][0], output["scales"][0])
    assert isinstance(again["scales"], list) and isinstance(again["scales"][1], tuple)
    assert torch.equal(again["scales"][1][0], output["scales"][1][0])
    assert OutputLayout.from_dict(layout.to_dict()) == layout  # what the plan records


def test_an_output_that_changes_shape_or_holds_other_things_is_refused_in_one_line():
    layout = OutputLayout.of(_output(2))
    changed = {"boxes": torch.randn(2, 7, 4), "scales": _output(2)["scales"]}  # more boxes
    with pytest.raises(UsageError, match="changed structure or shape per sample"):
        layout.pack(changed)
    with pytest.raises(UsageError, match="holds a str"):
        OutputLayout.of({"boxes": torch.randn(2, 4), "label": "cat"})
    with pytest.raises(UsageError, match="batch sizes"):
        OutputLayout.of((torch.randn(2, 4), torch.randn(3, 4)))


def test_only_several_tensors_without_logits_are_structured():
    assert is_structured(_output(2))
    assert not is_structured({"logits": torch.randn(2, 3), "hidden": torch.randn(2, 4)})
    assert not is_structured((torch.randn(2, 3),)) and not is_structured(torch.randn(2, 3))


def test_distillation_of_a_structured_output_is_refused_in_one_line(tmp_path):
    train, val, test = zoo.cell_data((32, 16, 16))
    with pytest.raises(UsageError, match="distill reads class scores"):
        prunepilot.search(
            zoo.dict_detector(), train=train, val=val, test=test, budget="50%", distill=True,
            loss=zoo.dict_cell_loss, metric=zoo.dict_cell_accuracy, out=str(tmp_path),
        )  # fmt: skip
    assert not any(tmp_path.iterdir())
