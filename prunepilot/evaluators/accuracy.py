"""Top-1 accuracy on a dataset of (input, label) pairs."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def top1_accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> float:
    """Share of samples whose arg-max output equals the label, in [0, 1]."""
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for inputs, labels in DataLoader(dataset, batch_size=batch_size):
            predicted = model(inputs).argmax(dim=1)
            correct += int((predicted == labels).sum())
            total += int(labels.numel())
    if total == 0:
        raise ValueError("Cannot measure accuracy on an empty dataset.")
    return correct / total
