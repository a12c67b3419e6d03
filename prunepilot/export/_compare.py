"""How an export is checked: the largest output difference from the model it was made from."""

from __future__ import annotations

import torch
from torch import nn

#: Largest absolute output difference accepted between the model and its reloaded export.
TOLERANCE = 1e-5


def max_difference(model: nn.Module, other: nn.Module, inputs: torch.Tensor) -> float:
    """The largest absolute difference between the two models' outputs on ``inputs``."""
    with torch.no_grad():
        return float((model.eval()(inputs) - other.eval()(inputs)).abs().max())
