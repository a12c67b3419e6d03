"""``nn.MultiheadAttention`` rewritten with one projection each for queries, keys and values, so
that its heads can be pruned.

``nn.MultiheadAttention`` keeps its projections fused in ``in_proj_weight`` and its math requires
``num_heads * head_dim == embed_dim``: a head cannot go without shrinking the residual stream.
:func:`split_attention` replaces each one in a model (a copy: discovery and pruning work on copies)
with a :class:`SplitAttention` that computes the same (to rounding), whose ``q_proj``, ``k_proj``,
``v_proj`` and ``out_proj`` are plain ``nn.Linear`` layers and whose head count is an attribute:
:mod:`prunepilot.policies.heads` then finds it and removes heads like any other attention module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SplitAttention(nn.Module):
    """Multi-head attention with separate query, key and value projections, called and answering
    as ``nn.MultiheadAttention`` does (``batch_first`` or not, unbatched inputs, ``attn_mask`` and
    ``key_padding_mask`` as booleans or additive floats, ``need_weights``, ``is_causal``).

    The attributes a parent ``nn.TransformerEncoderLayer`` reads are kept; ``in_proj_weight`` and
    ``in_proj_bias`` are None, which turns its fused inference path off.

    Args:
        attention: The module to copy (its weights are copied, not shared).
    """

    in_proj_weight = None
    in_proj_bias = None
    _qkv_same_embed_dim = False

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        self.embed_dim, self.num_heads = attention.embed_dim, attention.num_heads
        self.head_dim = attention.head_dim
        self.batch_first, self.dropout = attention.batch_first, attention.dropout
        self.q_proj, self.k_proj, self.v_proj = _projections(attention)
        self.out_proj = linear_of(attention.out_proj.weight, attention.out_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if unbatched or not self.batch_first:  # (length, batch, width) -> (batch, length, width)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        batch, length, sources = query.shape[0], query.shape[1], key.shape[1]
        q, k, v = (
            proj(x).view(batch, x.shape[1], self.num_heads, -1).transpose(1, 2)
            for proj, x in ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value))
        )
        mask = _additive_mask(attn_mask, key_padding_mask, batch, length, sources, q.dtype)
        if mask is None and is_causal:
            mask = _additive_mask(
                torch.ones(length, sources, dtype=torch.bool, device=q.device).triu(1), None, batch,
                length, sources, q.dtype,
            )  # fmt: skip
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
            out = F.dropout(weights, dropout, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, length, -1))
        if unbatched or not self.batch_first:
            out = out.transpose(0, 1)
        if unbatched:
            out = out.squeeze(1)
        if weights is not None:
            weights = weights.mean(dim=1) if average_attn_weights else weights
            weights = weights.squeeze(0) if unbatched else weights
        return out, weights


def split_attention(model: nn.Module) -> dict[str, str]:
    """Replaces, in place, each ``nn.MultiheadAttention`` of ``model`` with a :class:`SplitAttention`
    computing the same; a parent ``nn.TransformerEncoder`` stops packing padded batches into nested
    tensors (a path only the fused module takes).

    Returns:
        Modules left as they were, with the reason (learned key/value biases, zero attention).
    """
    left, replaced = {}, False
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.MultiheadAttention) or not name:  # a model that is one: kept
            continue
        if module.bias_k is not None or module.add_zero_attn:
            left[name] = "nn.MultiheadAttention with add_bias_kv or add_zero_attn: heads not pruned"
            continue
        model.set_submodule(name, SplitAttention(module))
        replaced = True
    if replaced:
        for module in model.modules():
            if isinstance(module, nn.TransformerEncoder):
                module.use_nested_tensor = False
    return left


def linear_of(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A new ``nn.Linear`` holding copies of ``weight`` (output-major) and ``bias``."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _projections(attention: nn.MultiheadAttention) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    """Its query, key and value projections as three ``nn.Linear`` (weights copied)."""
    if attention._qkv_same_embed_dim:
        weights = attention.in_proj_weight.detach().chunk(3)
    else:
        weights = (attention.q_proj_weight, attention.k_proj_weight, attention.v_proj_weight)
    biases = (None,) * 3 if attention.in_proj_bias is None else attention.in_proj_bias.detach().chunk(3)
    query, key, value = (linear_of(w, b) for w, b in zip(weights, biases, strict=True))
    return query, key, value


def _additive_mask(
    attn_mask: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
    batch: int,
    length: int,
    sources: int,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """Both masks as one float mask added to the scores, shaped (batch, heads or 1, length,
    sources); None when neither is given. A boolean mask is True where attention is not allowed."""
    merged = None
    for mask, shape in ((attn_mask, None), (key_padding_mask, (batch, 1, 1, sources))):
        if mask is None:
            continue
        if mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
        mask = mask.to(dtype)
        if shape is not None:
            mask = mask.view(shape)
        elif mask.dim() == 3:  # (batch * heads, length, sources)
            mask = mask.view(batch, -1, length, sources)
        merged = mask if merged is None else merged + mask
    return merged

