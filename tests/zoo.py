"""Tiny models and data for the tests, importable as ``tests.zoo:NAME`` by the CLI."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from prunepilot.tasks import DigitsResNet, digits_datasets


def tiny_resnet() -> nn.Module:
    """The default task's residual architecture at width 8 (about 10k parameters)."""
    torch.manual_seed(0)
    return DigitsResNet(width=8)


def digits_data():
    """The built-in digits splits."""
    return digits_datasets()


def small_digits_data():
    """A few hundred digits per split: enough to train and score, fast."""
    train, val, test = digits_datasets()
    return tuple(
        TensorDataset(split.tensors[0][:n], split.tensors[1][:n])
        for split, n in ((train, 400), (val, 150), (test, 150))
    )


def wrong_shape_data():
    """Datasets of 3x16x16 images: do not fit a model for 1x8x8 digits."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, 16, 16, generator=generator)
    y = torch.randint(0, 10, (40,), generator=generator)
    return TensorDataset(x, y), TensorDataset(x, y), TensorDataset(x, y)


def broken_factory() -> nn.Module:
    """A factory that fails, as a user's might."""
    raise RuntimeError("checkpoint server unreachable")


def not_a_model():
    """A factory that returns something other than a module."""
    return {"weights": [1, 2, 3]}


class _NoPrunable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)[:, :10]


def nothing_to_prune() -> nn.Module:
    """A model without a Conv or Linear layer: no prunable group."""
    return _NoPrunable()
