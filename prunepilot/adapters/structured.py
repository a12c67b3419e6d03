"""Outputs of any structure (a detector's dict of boxes and scores, a list of per-scale maps):
packed into one tensor for everything prunepilot does with a model, unpacked for the user's metric.

A model with a loss and a metric of the user's may return a dict, list or tuple of tensors (nested,
``ModelOutput`` included), each with the batch first and a fixed shape per sample. Tracing,
comparisons, distillation, latency and exports work on one tensor: :class:`OutputLayout` packs the
leaves side by side, one row a sample, and gives the structure back (dicts for ``ModelOutput``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from prunepilot.errors import UsageError

#: A structure's description: ``("tensor", shape)``, ``("dict", ((key, node), ...))``,
#: ``("list", (node, ...))`` or ``("tuple", (node, ...))``.
Node = tuple[str, Any]


@dataclass(frozen=True)
class OutputLayout:
    """Where each tensor of a structured output lies in its packed form.

    Attributes:
        structure: The output's structure (a :data:`Node`), with each tensor's shape per sample.
    """

    structure: Node

    @classmethod
    def of(cls, output: object) -> OutputLayout:
        """The layout of ``output`` (one batch of it).

        Raises:
            UsageError: when it holds something other than tensors of one batch size, or nothing.
        """
        structure = _describe(output)
        sizes = {len(t) for t in _leaves(output)}
        if len(sizes) != 1:
            raise UsageError(
                f"The model's outputs hold tensors of batch sizes {sorted(sizes)}; each tensor of a "
                "structured output must have the batch first (a fixed size per sample).",
                "model",
            )
        return cls(structure)

    def pack(self, output: object) -> torch.Tensor:
        """One float tensor of shape (batch, total size per sample) holding every leaf in order.

        Raises:
            UsageError: when ``output``'s structure or a shape per sample differs from the layout's
                (an output whose size varies from batch to batch cannot be packed).
        """
        if _describe(output, strict=False) != self.structure:
            raise UsageError(
                "The model's output changed structure or shape per sample between batches; a structured "
                "output must keep both (return fixed-size tensors, e.g. before non-maximum suppression).",
                "model",
            )
        leaves = _leaves(output)
        return torch.cat([t.flatten(1).float() if t.dim() > 1 else t[:, None].float() for t in leaves], dim=1)

    def unpack(self, packed: torch.Tensor) -> object:
        """The structure :meth:`pack` packed (dicts where it was a mapping)."""
        start = 0

        def build(node: Node) -> object:
            nonlocal start
            kind, body = node
            if kind == "tensor":
                size = math.prod(body)
                start += size
                return packed[:, start - size : start].reshape(len(packed), *body)
            if kind == "dict":
                return {key: build(child) for key, child in body}
            built = [build(child) for child in body]
            return built if kind == "list" else tuple(built)

        return build(self.structure)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the plan's and the report's ``outputs``)."""
        return {"structure": _plain(self.structure)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputLayout:
        """The layout :meth:`to_dict` wrote."""
        return cls(_node(data["structure"]))


def _describe(output: object, strict: bool = True) -> Node:
    if isinstance(output, torch.Tensor) and output.dim() >= 1:
        return ("tensor", tuple(output.shape[1:]))
    if isinstance(output, Mapping):
        items = [(k, v) for k, v in output.items() if v is not None]
        return ("dict", tuple((k, _describe(v, strict)) for k, v in items))
    if isinstance(output, (list, tuple)) and output:
        return ("list" if isinstance(output, list) else "tuple", tuple(_describe(v, strict) for v in output))
    if not strict:
        return ("other", type(output).__name__)
    raise UsageError(
        f"The model's output holds a {type(output).__name__}; a structured output may hold tensors "
        "(batch first) in dicts, lists and tuples only.",
        "model",
    )


def _leaves(output: object) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for v in output.values() if v is not None for t in _leaves(v)]
    return [t for v in output for t in _leaves(v)]


def _plain(node: Node) -> list:
    kind, body = node
    if kind == "tensor":
        return [kind, list(body)]
    if kind == "dict":
        return [kind, [[key, _plain(child)] for key, child in body]]
    return [kind, [_plain(child) for child in body]]


def _node(plain: list) -> Node:
    kind, body = plain
    if kind == "tensor":
        return (kind, tuple(int(d) for d in body))
    if kind == "dict":
        return (kind, tuple((str(key), _node(child)) for key, child in body))
    return (kind, tuple(_node(child) for child in body))
