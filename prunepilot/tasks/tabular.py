"""The built-in tabular task's model and data: an MLP on scikit-learn's breast-cancer table (569
samples of 30 features, 2 classes), offline.

The MLP has no BatchNorm, and its input is flat features feeding one ``nn.Linear``: the task that
input-feature pruning (``--input-features``) works on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

#: Features and classes of the breast-cancer table.
FEATURES = 30
CLASSES = 2
#: Widths of the tabular MLP's hidden layers.
HIDDEN = (64, 32)


class TabularMLP(nn.Module):
    """A plain MLP on flat features: Linear + ReLU per hidden layer, then a Linear classifier.

    Args:
        in_features: Features of one sample.
        hidden: Widths of the hidden layers.
        num_classes: Classifier outputs.
    """

    def __init__(
        self, in_features: int = FEATURES, hidden: Sequence[int] = HIDDEN, num_classes: int = CLASSES
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


def tabular_mlp() -> TabularMLP:
    """The tabular task's model, ``30 -> 64 -> 32 -> 2`` (untrained)."""
    return TabularMLP(FEATURES, HIDDEN, CLASSES)


def breast_cancer_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's breast-cancer table as (float32 N x 30 features, int64 labels), unscaled (the
    task standardizes them with its training split's statistics)."""
    from sklearn.datasets import load_breast_cancer

    table = load_breast_cancer()
    return table.data.astype(np.float32), table.target.astype(np.int64)


def standardize(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """``train`` and ``others`` scaled by ``train``'s per-feature mean and standard deviation (a
    constant feature is only centred), as float32."""
    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)
    std[~(std > 0)] = 1.0
    return tuple(((x - mean) / std).astype(np.float32) for x in (train, *others))
