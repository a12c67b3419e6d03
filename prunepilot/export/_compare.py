"""How an export is checked: the largest output difference from the model it was made from."""

from __future__ import annotations

import torch
from torch import nn

from prunepilot.adapters.several import Inputs, run

#: Largest absolute output difference accepted between the model and its reloaded export.
TOLERANCE = 1e-5


#: What an export that runs on the batch it was traced with but not on another says.
FIXED_BATCH = (
    "runs on the batch size it was traced with but not on others: the model turns a tensor's size "
    "into a Python number (len(x), int(x.shape[0])); read sizes as x.shape[0] to keep them free"
)


def max_difference(model: nn.Module, other: nn.Module, inputs: Inputs) -> float:
    """The largest absolute difference between the two models' outputs on ``inputs`` (one tensor, or
    a tuple for a model of several inputs)."""
    with torch.no_grad():
        return float((run(model.eval(), inputs) - run(other.eval(), inputs)).abs().max())
