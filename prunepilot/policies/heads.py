"""Attention heads: found in a model's modules, pruned whole.

An attention module is one holding query, key and value projections and a head count: three
``nn.Linear`` under the names Hugging Face models and PyTorch ports use, or one fused ``qkv``
``nn.Linear`` whose outputs are the queries, then the keys, then the values, each head after head
(timm's ViT, DeiT and Swin). Torch-Pruning's dependency graph couples the projections' output
channels with the output projection's input channels in one group; :mod:`prunepilot.policies.apply`
removes whole heads from it (:meth:`Attention.channels_of`), and :func:`heads_removed` then updates
the module's head count and slices its per-head parameters (a Swin relative-position bias table),
which the graph cannot map. A layout this does not read right is caught when discovery tries the
group (:func:`~prunepilot.policies.apply.unprunable_groups` compares the model without a head with
the model whose head is zeroed), and the group is left whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from prunepilot.policies.rewrites import prunable_copy

#: Attribute names of the query, key and value projections.
QUERY_NAMES = ("q_proj", "query", "q_lin", "q")
KEY_NAMES = ("k_proj", "key", "k_lin", "k")
VALUE_NAMES = ("v_proj", "value", "v_lin", "v")
#: Attribute names of a fused query-key-value projection.
FUSED_NAMES = ("qkv", "qkv_proj", "c_attn")
#: Attribute names of the heads' width (head count x head size), updated when heads are removed.
WIDTH_NAMES = ("all_head_size", "split_size")
#: Attribute names of the head count, updated when heads are removed.
HEAD_COUNT_NAMES = ("num_attention_heads", "n_heads", "num_heads", "num_attention_heads_per_partition")


@dataclass(frozen=True)
class Attention:
    """One attention module of a model.

    Attributes:
        name: Its qualified name.
        module: The module.
        projections: Its query, key and value ``nn.Linear`` layers, or its one fused ``qkv`` layer.
        heads: Its head count.
        head_dim: Channels per head (in each of the query, key and value).
        tables: Per-head parameters as (owner module, attribute name): tensors whose last dimension
            is the head count.
    """

    name: str
    module: nn.Module
    projections: tuple[nn.Linear, ...]
    heads: int
    head_dim: int
    tables: tuple[tuple[nn.Module, str], ...] = ()

    @property
    def fused(self) -> bool:
        """Whether one layer projects the queries, keys and values."""
        return len(self.projections) == 1

    @property
    def channels_per_head(self) -> int:
        """A head's channels in a projection's output: ``head_dim``, thrice in a fused one."""
        return self.head_dim * (3 if self.fused else 1)

    def head_of(self, channel: int) -> int:
        """The head a projection's output channel belongs to."""
        return (channel % (self.heads * self.head_dim)) // self.head_dim

    def channels_of(self, heads: Iterable[int]) -> list[int]:
        """A projection's output channels of ``heads`` (in each part of a fused one), sorted."""
        heads, width = list(heads), self.heads * self.head_dim
        parts = range(3) if self.fused else range(1)
        return sorted(
            p * width + h * self.head_dim + j for p in parts for h in heads for j in range(self.head_dim)
        )


def find_attention(model: nn.Module) -> list[Attention]:
    """Every attention module of ``model`` whose projections split evenly into its heads."""
    found = []
    for name, module in model.named_modules():
        counts = (getattr(module, a, None) for a in HEAD_COUNT_NAMES)
        heads = next((c for c in counts if isinstance(c, int) and not isinstance(c, bool)), 0)
        split = tuple(_linear(module, names) for names in (QUERY_NAMES, KEY_NAMES, VALUE_NAMES))
        fused = _linear(module, FUSED_NAMES)
        if None not in split and len({p.out_features for p in split}) == 1:
            projections, width = split, split[0].out_features
        elif fused is not None and fused.out_features % 3 == 0:
            projections, width = (fused,), fused.out_features // 3
        else:
            continue
        if heads < 1 or width % heads:
            continue
        found.append(Attention(name, module, projections, heads, width // heads, _tables(module, heads)))
    return found


def head_counts(model: nn.Module) -> dict[str, int]:
    """Attention module name -> its head count (empty for a model without attention), read from
    the model in the form pruning sees (``nn.MultiheadAttention`` and GPT-2's layers included)."""
    return {a.name: a.heads for a in find_attention(prunable_copy(model))}


def head_tables(attention: list[Attention]) -> list[nn.Parameter]:
    """The per-head parameters of ``attention`` (left out of the dependency graph)."""
    return [getattr(owner, attr) for a in attention for owner, attr in a.tables]


def heads_removed(attention: Attention, channels: list[int]) -> int:
    """Records that ``channels`` of ``attention``'s projections (whole heads) were removed: its head
    count attributes are lowered and its per-head parameters lose those heads' columns.

    Returns:
        The heads left.
    """
    removed = sorted({attention.head_of(c) for c in channels})
    left = attention.heads - len(removed)
    module = attention.module
    for name in HEAD_COUNT_NAMES:
        if isinstance(getattr(module, name, None), int):
            setattr(module, name, left)
    for name in WIDTH_NAMES:
        if isinstance(getattr(module, name, None), int):
            setattr(module, name, left * attention.head_dim)
    keep = [h for h in range(attention.heads) if h not in set(removed)]
    for owner, attr in attention.tables:
        table = getattr(owner, attr)
        with torch.no_grad():
            setattr(owner, attr, nn.Parameter(table[..., keep].clone(), requires_grad=table.requires_grad))
    return left


def _linear(module: nn.Module, names: tuple[str, ...]) -> nn.Linear | None:
    return next((getattr(module, n) for n in names if isinstance(getattr(module, n, None), nn.Linear)), None)


def _tables(module: nn.Module, heads: int) -> tuple[tuple[nn.Module, str], ...]:
    """Parameters of ``module`` and its non-Linear children whose last dimension is the head count."""
    tables = []
    for owner in (module, *module.children()):
        if isinstance(owner, (nn.Linear, nn.LayerNorm)):
            continue
        for attr, parameter in owner.named_parameters(recurse=False):
            if parameter.dim() >= 2 and parameter.shape[-1] == heads:
                tables.append((owner, attr))
    return tuple(tables)
