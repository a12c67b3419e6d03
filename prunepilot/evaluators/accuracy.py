"""Top-1 accuracy on a dataset of (input, label) pairs."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from prunepilot.adapters import Split, batches
from prunepilot.gate import NullGate


def top1_accuracy(
    model: nn.Module,
    dataset: Dataset | DataLoader | Split,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    gate: NullGate | None = None,
) -> float:
    """Share of samples whose arg-max output equals the label, in [0, 1].

    Args:
        model: The model (on ``device``).
        dataset: (input, integer label) pairs.
        batch_size: Samples per forward pass.
        device: Where the batches go.
        gate: Held shared around each batch (see :mod:`prunepilot.gate`).
    """
    gate = gate or NullGate()
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for inputs, labels in batches(dataset, batch_size):
            with gate.compute():
                predicted = model(inputs.to(device)).argmax(dim=1).cpu()
            correct += int((predicted == labels.reshape(predicted.shape)).sum())
            total += int(labels.numel())
    if total == 0:
        raise ValueError("Cannot measure accuracy on an empty dataset.")
    return correct / total
