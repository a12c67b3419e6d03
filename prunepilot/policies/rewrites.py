"""Rewrites into forms the dependency graph can prune, each computing what it replaces.

Discovery traces, and every pruning prunes, a copy of the model in this form
(:func:`prunable_copy`), so group names agree between them and the plan replays them:
``nn.MultiheadAttention`` is split into query, key and value layers
(:mod:`prunepilot.policies.split_attention`), and ``transformers``' ``Conv1D`` (GPT-2's layers: a
linear layer with its weight stored transposed) becomes the ``nn.Linear`` it computes. The unpruned
model keeps its own modules.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from prunepilot.inputs import eval_copy
from prunepilot.policies.split_attention import split_attention


def prunable_form(model: nn.Module) -> dict[str, str]:
    """Rewrites ``model`` in place.

    Returns:
        The modules left as they were because they cannot be rewritten, with the reason.
    """
    conv1d = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)  # loaded if used
    if conv1d is not None:
        for name, module in list(model.named_modules()):
            if isinstance(module, conv1d) and name:
                parent, _, attr = name.rpartition(".")
                setattr(model.get_submodule(parent), attr, _as_linear(module))
    return split_attention(model)


def prunable_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode, in the prunable form."""
    work = eval_copy(model)
    prunable_form(work)
    return work


def _as_linear(layer: nn.Module) -> nn.Linear:
    """The ``nn.Linear`` a ``Conv1D`` computes (its weight is stored input-major)."""
    inputs, outputs = layer.weight.shape
    linear = nn.Linear(inputs, outputs, bias=layer.bias is not None)
    with torch.no_grad():
        linear.weight.copy_(layer.weight.T)
        if layer.bias is not None:
            linear.bias.copy_(layer.bias)
    return linear
