"""Models that take several inputs (``input_ids`` and ``attention_mask``; an image and a table).

Everything that handles a model's input (scoring, fine-tuning, tracing, counting FLOPs, timing,
the runtimes) handles one tensor. A model of several inputs is fed one *packed* tensor: the inputs
of a batch stacked along a new dimension 1 when they share one shape (token ids, masks and type ids
of one padded length), else flattened and concatenated, in one dtype (theirs, or ``float64`` when
they differ: every integer below 2**53 survives it). :class:`~prunepilot.adapters.LogitsModel`
unpacks it and calls the user's model with each input under its name (or in its place, for tuple
batches); the exports take the inputs by name again (:class:`~prunepilot.adapters.NamedInputs`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunepilot.errors import UsageError
from prunepilot.inputs import INPUT_DTYPES

#: The dtypes an input may have (a mask may be bool; the packed tensor is never).
_DTYPES = {**INPUT_DTYPES, "bool": torch.bool}

__all__ = ["Inputs", "ModelInputs", "forward_inputs", "free_axes", "rows", "run"]


@dataclass(frozen=True)
class ModelInputs:
    """The several inputs of a model, and how they are packed into one tensor.

    Attributes:
        names: The inputs' names in the model's ``forward``, in the order they are packed.
        shapes: Each input's shape per sample (without the batch dimension).
        dtypes: Each input's dtype name (a key of :data:`~prunepilot.inputs.INPUT_DTYPES`, or ``bool``).
        positional: The model takes them in this order (a tuple batch), not by name.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    positional: bool = False

    @property
    def stacked(self) -> bool:
        """Whether the inputs share one shape and are stacked (any length of that shape then)."""
        return len(set(self.shapes)) == 1

    @property
    def free_sequence(self) -> bool:
        """Whether the inputs are sequences stacked from one shape of one dimension (token ids and
        their mask), whose length may change from batch to batch (a tokenizer's dynamic padding)."""
        return self.stacked and len(self.shapes[0]) == 1

    @property
    def dtype(self) -> str:
        """The packed tensor's dtype name: the inputs', or ``float64`` when they differ (or are bool)."""
        same = len(set(self.dtypes)) == 1 and self.dtypes[0] in INPUT_DTYPES
        return self.dtypes[0] if same else "float64"

    def pack(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """One batch of the inputs (in :attr:`names`' order) as one tensor.

        Raises:
            UsageError: when an input's shape per sample differs from the first batch's where the
                inputs are concatenated (they must keep their shape).
        """
        dtype = INPUT_DTYPES[self.dtype]
        if self.stacked and len({tuple(t.shape) for t in tensors}) == 1:
            return torch.stack([t.to(dtype) for t in tensors], dim=1)
        for name, tensor, shape in zip(self.names, tensors, self.shapes):
            if tuple(tensor.shape[1:]) != shape:
                raise UsageError(
                    f"The data's input {name!r} has shape {tuple(tensor.shape[1:])} per sample in one batch "
                    f"and {shape} in the first; inputs of different shapes must keep their shape.",
                    "data",
                )
        return torch.cat([t.reshape(len(t), -1).to(dtype) for t in tensors], dim=1)

    def unpack(self, packed: torch.Tensor) -> list[torch.Tensor]:
        """The inputs of a packed batch, each in its own dtype and shape."""
        dtypes = [_DTYPES[d] for d in self.dtypes]
        if self.stacked:
            return [packed[:, i].to(dtype) for i, dtype in enumerate(dtypes)]
        found, start = [], 0
        for shape, dtype in zip(self.shapes, dtypes):
            size = math.prod(shape)
            found.append(packed[:, start : start + size].reshape(-1, *shape).to(dtype))  # batch left free
            start += size
        return found

    def example(self, batch: int, device: str | torch.device = "cpu") -> torch.Tensor:
        """A synthetic packed batch: standard normal values for floating inputs, zeros for the
        others (token ids, masks), each in its own dtype and shape."""
        tensors = []
        for shape, name in zip(self.shapes, self.dtypes):
            dtype = _DTYPES[name]
            if dtype.is_floating_point:
                tensors.append(torch.randn(batch, *shape, device=device).to(dtype))
            else:
                tensors.append(torch.zeros(batch, *shape, dtype=dtype, device=device))
        return self.pack(tensors)

    def call(self, model: nn.Module, tensors: Sequence[torch.Tensor]) -> Any:
        """``model`` run on the inputs, by name or in their places."""
        if self.positional:
            return model(*tensors, **cache_off(model))
        return model(**dict(zip(self.names, tensors)), **cache_off(model))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the plan's ``inputs``, the report's ``export.inputs``)."""
        return {"names": list(self.names), "shapes": [list(s) for s in self.shapes],
                "dtypes": list(self.dtypes), "positional": self.positional}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInputs:
        """The inputs :meth:`to_dict` wrote."""
        return cls(tuple(data["names"]), tuple(tuple(s) for s in data["shapes"]), tuple(data["dtypes"]),
                   bool(data.get("positional", False)))  # fmt: skip


def forward_inputs(
    model: nn.Module, batch: object, labels: str | None, input_keys: Sequence[str] | None = None
) -> ModelInputs | None:
    """The several inputs ``model`` takes from ``batch`` (the data's first batch), or None for one.

    A dict batch gives the model every key its ``forward`` names (``input_ids``, ``attention_mask``,
    ``token_type_ids``, ``pixel_mask`` ...), but the labels' (the key ``labels``);
    ``input_keys`` names them instead where the signature cannot (``forward(**kwargs)``). A tuple
    batch ``(x1, ..., xk, labels)`` gives the model its first ``k`` items, ``k`` the number of
    tensors its ``forward`` requires.

    Raises:
        UsageError: when ``input_keys`` names what the batch lacks or what is not a tensor.
    """
    parameters = _parameters(model)
    if isinstance(batch, Mapping):
        tensor = {k for k, v in batch.items() if isinstance(v, torch.Tensor)}
        names = list(input_keys or [p.name for p in parameters if p.name in tensor and p.name != labels])
        missing = [n for n in names if n not in tensor]
        if missing:
            raise UsageError(
                f"The data's batches hold no tensor under {missing} (named by input_keys); they have "
                f"{sorted(batch)}.",
                "input_keys",
            )
        tensors, positional = [batch[n] for n in names], False
    elif isinstance(batch, (tuple, list)):
        required = [p for p in parameters if p.default is inspect.Parameter.empty
                    and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]  # fmt: skip
        if len(required) < 2 or len(batch) <= len(required):
            return None
        names, tensors, positional = [p.name for p in required], list(batch[: len(required)]), True
    else:
        return None
    if len(names) < 2 or not all(isinstance(t, torch.Tensor) for t in tensors):
        return None
    by_dtype = {dtype: name for name, dtype in _DTYPES.items()}
    dtypes = [by_dtype.get(t.dtype) for t in tensors]
    if None in dtypes:
        found = {n: str(t.dtype) for n, t in zip(names, tensors)}
        raise UsageError(f"The data's inputs have dtypes {found}; accepted: {list(_DTYPES)}.", "data")
    shapes = tuple(tuple(t.shape[1:]) for t in tensors)
    return ModelInputs(tuple(names), shapes, tuple(dtypes), positional)  # type: ignore[arg-type]


def cache_off(model: nn.Module) -> dict[str, bool]:
    """``use_cache=False`` for a model whose config asks for a key-value cache (a decoder's): no score,
    trace or export reuses one, and building it concatenates tensors Torch-Pruning cannot follow."""
    return {"use_cache": False} if getattr(getattr(model, "config", None), "use_cache", False) is True else {}


def _parameters(model: nn.Module) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return []


#: A batch of a model's inputs: one tensor, or a tuple of tensors (:class:`NamedInputs`' inputs).
Inputs = torch.Tensor | tuple[torch.Tensor, ...]


def run(model: nn.Module, inputs: Inputs) -> Any:
    """``model`` on a batch of one input or of several (in their places)."""
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def rows(inputs: Inputs, count: int) -> Inputs:
    """The first ``count`` samples of a batch, repeated in turn when it holds fewer."""
    def take(tensor: torch.Tensor) -> torch.Tensor:
        index = torch.arange(count) % len(tensor)
        return tensor[index]

    return tuple(take(t) for t in inputs) if isinstance(inputs, tuple) else take(inputs)


def free_axes(inputs: ModelInputs) -> dict[str, dict[int, str]]:
    """The dimensions an export leaves free for each input: the batch, and the sequence of inputs
    stacked from one shape of one dimension (token ids, masks)."""
    return {name: {0: "batch", **({1: "sequence"} if inputs.free_sequence else {})} for name in inputs.names}
