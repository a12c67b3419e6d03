"""Example inputs: one sample's shape and dtype, and the synthetic batches that trace, count and time
a model."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

#: The input dtypes a job may name, by their torch names. Half precision is left out: its exports
#: cannot be checked in ONNX Runtime on the CPU (and belongs with quantization).
INPUT_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
}
DEFAULT_DTYPE = "float32"
#: Batch size of the example input used for tracing (2 keeps batch-dependent ops honest).
TRACE_BATCH = 2


class InputShape(tuple):
    """One sample's shape (a plain tuple of ints, without the batch dimension) that also knows the
    sample's dtype, so that every function taking a shape makes inputs of the right kind.

    Attributes:
        dtype: A key of :data:`INPUT_DTYPES`.
        several: For a model of several inputs packed into one tensor, their
            :class:`~prunepilot.adapters.several.ModelInputs` (synthetic batches are made input by
            input, each in its own dtype, then packed); None otherwise.
    """

    dtype: str
    several: Any

    def __new__(cls, dims: Iterable[int], dtype: str = DEFAULT_DTYPE, several: Any = None) -> InputShape:
        if dtype not in INPUT_DTYPES:
            raise ValueError(f"The input dtype must be one of {list(INPUT_DTYPES)}. Got {dtype!r} instead.")
        shape = super().__new__(cls, (int(d) for d in dims))
        shape.dtype, shape.several = dtype, several
        return shape

    def __reduce__(self):  # pickles (Ray, deepcopy) with its dtype and inputs
        return (InputShape, (tuple(self), self.dtype, self.several))

    def __repr__(self) -> str:
        return repr(tuple(self)) if self.dtype == DEFAULT_DTYPE else f"{tuple(self)!r} {self.dtype}"


def dtype_of(shape: tuple[int, ...]) -> str:
    """The dtype name of ``shape`` (``float32`` for a plain tuple)."""
    return getattr(shape, "dtype", DEFAULT_DTYPE)


def dtype_name(dtype: torch.dtype) -> str | None:
    """The name of a torch dtype in :data:`INPUT_DTYPES`, or None when it is not one of them."""
    return next((name for name, value in INPUT_DTYPES.items() if value == dtype), None)


def example_batch(
    input_shape: tuple[int, ...], batch: int = 1, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """A synthetic batch of ``input_shape``'s dtype: standard normal values for floating dtypes,
    zeros for integer ones (index 0 is valid for any embedding table); several inputs are made each
    so, then packed."""
    several = getattr(input_shape, "several", None)
    if several is not None:
        return several.example(batch, device)
    dtype = INPUT_DTYPES[dtype_of(input_shape)]
    if dtype.is_floating_point:
        return torch.randn(batch, *input_shape, device=device).to(dtype)
    return torch.zeros(batch, *input_shape, dtype=dtype, device=device)


def eval_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode (not ``copy.deepcopy(m).eval()``: a module may override
    ``train()`` and return None, as some Hugging Face attention layers do)."""
    copied = copy.deepcopy(model)
    copied.eval()
    return copied


def on_device(model: nn.Module, device: str | torch.device) -> nn.Module:
    """``model`` itself on the CPU, else a copy of it moved to ``device`` (the original stays put)."""
    return model if torch.device(device).type == "cpu" else copy.deepcopy(model).to(device)
