"""Input-feature pruning: the first Linear's columns cut, the model wrapped to keep its input shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prunepilot.errors import UsageError
from prunepilot.families.features import KeptFeatures, check_single_use, first_linear_name, keep_features
from prunepilot.tasks.tabular import TabularMLP
from tests import zoo


class _InputTwice(nn.Module):
    """A wide-and-deep model: the raw input feeds the MLP and a linear skip."""

    def __init__(self) -> None:
        super().__init__()
        self.deep = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
        self.wide = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deep(x) + self.wide(x)


class _InputSummed(nn.Module):
    """The input feeds one Linear and a sum that any dropped feature changes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + x.sum(-1, keepdim=True)


class _FirstFour(nn.Module):
    """Takes 10 features but its Linear only the first four."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x[:, :4])


def _mlp() -> TabularMLP:
    torch.manual_seed(0)
    return TabularMLP(10, (16, 8), 3).eval()


def test_the_first_linear_is_the_one_the_input_feeds():
    model = _mlp()
    assert first_linear_name(model, (10,)) == "body.0"


def test_the_cut_model_equals_the_whole_one_with_the_dropped_columns_zeroed():
    model = _mlp()
    kept = [0, 2, 3, 7, 9]
    cut = keep_features(model, (10,), kept)
    assert isinstance(cut, KeptFeatures) and cut.kept == tuple(kept)
    assert cut.inner.body[0].in_features == 5 and tuple(cut.inner.body[0].weight.shape) == (16, 5)
    assert model.body[0].in_features == 10  # the model itself is not changed
    assert "index" in dict(cut.named_buffers())
    zeroed = _mlp()
    with torch.no_grad():
        zeroed.body[0].weight[:, [1, 4, 5, 6, 8]] = 0
    x = torch.randn(7, 10)
    with torch.no_grad():
        assert torch.allclose(cut(x), zeroed(x), atol=1e-6)
        assert torch.allclose(cut.inner(x[:, kept]), zeroed(x), atol=1e-6)


def test_kept_features_may_be_numpy_integers_or_a_tensor():
    assert keep_features(_mlp(), (10,), np.array([3, 1])).kept == (3, 1)
    assert keep_features(_mlp(), (10,), torch.tensor([4])).kept == (4,)


def test_the_cut_layer_still_trains():
    cut = keep_features(_mlp(), (10,), [1, 5])
    cut.train()
    cut(torch.randn(4, 10)).sum().backward()
    assert cut.inner.body[0].weight.grad is not None and cut.training and cut.inner.training


def test_a_model_whose_input_feeds_one_linear_passes_the_check():
    assert check_single_use(_mlp(), (10,)) == "body.0"


@pytest.mark.parametrize("factory", [_InputTwice, _InputSummed])
def test_an_input_used_elsewhere_too_is_refused_in_one_line(factory):
    torch.manual_seed(0)
    model = factory().eval()
    with pytest.raises(
        UsageError, match=r"needs the input to feed one nn\.Linear only; model '_Input"
    ) as raised:
        check_single_use(model, (10,))
    assert "\n" not in str(raised.value) and raised.value.field == "input_features"


def test_a_model_whose_input_is_not_flat_features_is_refused_in_one_line():
    message = (
        "--input-features needs a model whose input is flat features (shape (F,)) feeding an nn.Linear; "
        "this model's input shape is (1, 8, 8)."
    )
    with pytest.raises(UsageError) as raised:
        first_linear_name(zoo.mlp_logsoftmax(), (1, 8, 8))
    assert str(raised.value) == message
    with pytest.raises(
        UsageError, match=r"input of shape \(10,\) feeds no nn.Linear of 10 input features\.$"
    ):
        first_linear_name(_FirstFour(), (10,))
    with pytest.raises(
        UsageError, match=r"this model fails on a batch of shape \(2, 5\) \(RuntimeError: mat1"
    ):
        first_linear_name(_mlp(), (5,))


@pytest.mark.parametrize("kept", [[], [0, 0], [10], [-1], [1.0]])
def test_kept_features_that_are_not_distinct_indices_are_refused(kept):
    with pytest.raises(
        UsageError, match=r"'input_features' parameter of Policy must be distinct feature indices"
    ):
        keep_features(_mlp(), (10,), kept)
