"""Removable blocks: residual blocks with an identity shortcut, which a policy may remove whole.

A block computes ``x + f(x)`` (perhaps followed by a ReLU of a non-negative sum); removing it leaves
``x``, so the model keeps its shapes and loses the block's every layer, with the fixed cost each
layer has on the device however few channels it keeps. On a small model at a tight latency budget
that fixed cost is much of what is left, and a shallower model with more channels can be both
faster and more accurate than a deeper one pruned thin (as in layer-pruning work on ResNets).

A module counts as a block when, on an example input, zeroing its own parameters turns it into the
identity: that is the functional meaning of an identity shortcut, whatever the module's class, and
no tracing is needed. "The identity" is judged relative to the input's own scale, so that a layer
fed tiny activations does not pass for one; normalization layers are never blocks on their own.
A pre-norm transformer block (``x + attn(norm(x))``) qualifies; a post-norm one
(``norm(x + attn(x))``) does not. Only the innermost such modules are listed (a stage of two
blocks is removed by removing both).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from prunepilot.errors import UsageError
from prunepilot.inputs import eval_copy, example_batch

#: Largest difference from the identity accepted of a block whose parameters are zeroed, as a share
#: of the largest magnitude of its input.
IDENTITY_TOLERANCE = 1e-6
#: Layers that are never a block on their own, whatever they compute on an example input.
NEVER_BLOCKS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def discover_blocks(model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    """Qualified names of the removable blocks of ``model``, in module order; ``model`` is not
    changed.

    A module qualifies when it has parameters, runs once per forward pass with one tensor in (no
    keyword arguments) that is not all zeros and a tensor of the same shape out, does not hold
    another qualifying module, and becomes the identity on that input when its parameters are
    zeroed. Blocks that end in an activation of a sum that can be negative are not found (removing
    them would drop the activation too).

    Raises:
        Whatever the model raises on an example input (``input_shape``'s dtype, batch of 2).
    """
    work = eval_copy(model)
    names = {module: name for name, module in work.named_modules() if name}
    calls: dict[str, list[torch.Tensor | None]] = {}
    outputs: dict[str, list[object]] = {}

    def before(module: nn.Module, args: tuple, kwargs: dict) -> None:
        single = len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor)
        calls.setdefault(names[module], []).append(args[0].detach().clone() if single else None)

    def after(module: nn.Module, _args: tuple, output: object) -> None:
        outputs.setdefault(names[module], []).append(output)

    handles = [m.register_forward_pre_hook(before, with_kwargs=True) for m in names]
    handles += [m.register_forward_hook(after) for m in names]
    try:
        with torch.no_grad():
            work(example_batch(input_shape, 2))
    finally:
        for handle in handles:
            handle.remove()
    found = []
    for name, module in work.named_modules():
        inputs, output = calls.get(name, []), outputs.get(name, [])
        if len(inputs) != 1 or inputs[0] is None or not any(True for _ in module.parameters()):
            continue
        if isinstance(module, NEVER_BLOCKS):
            continue
        x = inputs[0]
        same_shape = isinstance(output[0], torch.Tensor) and output[0].shape == x.shape
        # On an all-zero input every zeroed layer looks like the identity.
        if same_shape and x.is_floating_point() and bool(x.any()) and _identity_when_zeroed(module, x):
            found.append(name)
    return [name for name in found if not any(other.startswith(name + ".") for other in found)]


def _identity_when_zeroed(module: nn.Module, inputs: torch.Tensor) -> bool:
    """Whether a copy of ``module`` with every parameter zeroed returns ``inputs`` unchanged."""
    zeroed = eval_copy(module)
    with torch.no_grad():
        for parameter in zeroed.parameters():
            parameter.zero_()
        try:
            output = zeroed(inputs)
        except Exception:  # noqa: BLE001 - a module that cannot run alone is not a block
            return False
    if not isinstance(output, torch.Tensor) or output.shape != inputs.shape:
        return False
    scale = float(inputs.abs().max())
    return scale > 0 and float((output - inputs).abs().max()) <= IDENTITY_TOLERANCE * scale


def remove_blocks(model: nn.Module, names: Iterable[str]) -> nn.Module:
    """Replaces each named module of ``model`` (in place) by ``nn.Identity``; returns ``model``.

    Raises:
        UsageError: when a name is not a module of ``model``.
    """
    modules = dict(model.named_modules())
    for name in names:
        if not name or name not in modules:
            raise UsageError(f"Cannot remove block {name!r}: the model has no module of that name.")
        model.set_submodule(name, nn.Identity())
    return model
