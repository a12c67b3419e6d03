"""Rewrites into forms the dependency graph can prune, each computing what it replaces.

Discovery traces, and every pruning prunes, a copy of the model in this form
(:func:`prunable_copy`), so group names agree between them and the plan replays them:
``nn.MultiheadAttention`` is split into query, key and value layers
(:mod:`prunepilot.policies.split_attention`); ``transformers``' ``Conv1D`` (GPT-2's layers: a
linear layer with its weight stored transposed) becomes the ``nn.Linear`` it computes; and timm's
``Attention``, which reshapes its heads back to the input's width (``reshape(B, N, C)``) and so
cannot lose one, becomes a :class:`HeadFreeAttention` reshaping them to whatever width they hold,
where it computes the same on a test input (else it is left, and its heads with it). The unpruned
model keeps its own modules.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

from prunepilot.inputs import eval_copy
from prunepilot.policies.split_attention import linear_of, split_attention


def prunable_form(model: nn.Module) -> dict[str, str]:
    """Rewrites ``model`` in place.

    Returns:
        The modules left as they were because they cannot be rewritten, with the reason.
    """
    conv1d = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)  # loaded if used
    for name, module in list(model.named_modules()):
        if not name:
            continue
        if conv1d is not None and isinstance(module, conv1d):
            model.set_submodule(name, _as_linear(module))
        elif HeadFreeAttention.fits(module):
            free = HeadFreeAttention(module)
            if _same_on_a_test_input(module, free):
                model.set_submodule(name, free)
    return split_attention(model)


def prunable_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode, in the prunable form."""
    work = eval_copy(model)
    prunable_form(work)
    return work


class HeadFreeAttention(nn.Module):
    """timm's ``Attention`` (one fused ``qkv`` Linear read as queries, keys, values, each head after
    head; optional ``q_norm``, ``k_norm`` and ``norm``; ``proj``), reshaping the heads back to the
    width they hold so that heads can be removed. It holds the original's layers.

    Args:
        attention: The module it computes the same as (see :meth:`fits`).
    """

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.num_heads, self.head_dim = attention.num_heads, attention.head_dim
        self.scale = float(getattr(attention, "scale", self.head_dim**-0.5))
        self.qkv, self.proj = attention.qkv, attention.proj
        for name in ("q_norm", "k_norm", "norm", "attn_drop", "proj_drop"):
            part = getattr(attention, name, None)
            setattr(self, name, part if isinstance(part, nn.Module) else nn.Identity())

    @staticmethod
    def fits(module: nn.Module) -> bool:
        """Whether ``module`` is laid out as timm's ``Attention`` (what it computes is checked apart)."""
        qkv, proj = getattr(module, "qkv", None), getattr(module, "proj", None)
        heads, size = getattr(module, "num_heads", None), getattr(module, "head_dim", None)
        return (
            isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and isinstance(heads, int)
            and isinstance(size, int) and qkv.out_features == 3 * heads * size == 3 * proj.in_features
            and not isinstance(module, HeadFreeAttention)
        )  # fmt: skip

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, tokens = x.shape[0], x.shape[1]
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        dropout = self.attn_drop.p if self.training and isinstance(self.attn_drop, nn.Dropout) else 0.0
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout, scale=self.scale)
        x = x.transpose(1, 2).reshape(batch, tokens, -1)
        return self.proj_drop(self.proj(self.norm(x)))


def _same_on_a_test_input(module: nn.Module, other: nn.Module) -> bool:
    """Whether both compute the same on random tokens of the module's width (in eval mode)."""
    width = module.qkv.in_features
    tokens = torch.randn(2, 5, width, generator=torch.Generator().manual_seed(0))
    training = module.training
    module.eval(), other.eval()
    try:
        with torch.no_grad():
            expected, found = module(tokens), other(tokens)
    except Exception:  # noqa: BLE001 - a module called otherwise is not timm's
        return False
    finally:
        module.train(training), other.train(training)
    same_shape = isinstance(expected, torch.Tensor) and expected.shape == found.shape
    return same_shape and torch.allclose(expected, found, atol=1e-5, rtol=1e-4)


def _as_linear(layer: nn.Module) -> nn.Linear:
    """The ``nn.Linear`` a ``Conv1D`` computes (its weight is stored input-major)."""
    return linear_of(layer.weight.T, layer.bias)
