"""Static costs of a model: FLOPs (torch's flop counter), parameters, serialized and compressed size."""

from __future__ import annotations

import contextlib
import io
import zlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@contextlib.contextmanager
def _counted() -> Iterator[FlopCounterMode]:
    """A flop counter, with ``nn.MultiheadAttention``'s and ``nn.TransformerEncoderLayer``'s fused
    inference kernels off: the counter does not see inside them (it counted a transformer encoder
    as its MLPs alone); the unfused path computes the same."""
    mha = getattr(torch.backends, "mha", None)  # torch 2.3 and later
    fast = mha.get_fastpath_enabled() if mha is not None else None
    if mha is not None:
        mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            yield counter
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(fast)


def count_flops(model: nn.Module, inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass on ``inputs`` (pass a batch of one for per-sample FLOPs)."""
    with _counted() as counter:
        model(inputs)
    return int(counter.get_total_flops())


def flops_by_module(model: nn.Module, inputs: torch.Tensor) -> dict[str, int]:
    """FLOPs of each leaf module, keyed by qualified name (modules without FLOPs are absent)."""
    with _counted() as counter:
        model(inputs)
    root = type(model).__name__
    counts = {}
    leaves = {name for name, m in model.named_modules() if not list(m.children())}
    for key, per_op in counter.get_flop_counts().items():
        name = key[len(root) + 1 :] if key.startswith(root + ".") else None
        if name in leaves:
            counts[name] = int(sum(per_op.values()))
    return counts


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def state_dict_bytes(model: nn.Module) -> bytes:
    """The model's state dict as ``torch.save`` writes it."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def serialized_size(model: nn.Module) -> int:
    """Bytes of the model's state dict as saved by ``torch.save``."""
    return len(state_dict_bytes(model))


def compressed_size(data: bytes, level: int = 6) -> int:
    """Bytes of ``data`` compressed by zlib at ``level``: what zeroed weights save, which
    ``torch.save`` (uncompressed zip entries) does not show."""
    return len(zlib.compress(data, level))
