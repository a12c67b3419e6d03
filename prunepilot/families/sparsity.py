"""Unstructured sparsity: the smallest weights of Conv and Linear layers set to zero, on
``torch.nn.utils.prune``.

Zeroed weights make a model neither faster nor smaller as saved, but smaller once compressed
(see :func:`prunepilot.evaluators.cost.compressed_size`): they serve size budgets. Pruning adds a
``weight_orig`` parameter, a ``weight_mask`` buffer and a forward pre-hook to each target; the
masks keep the zeros while a model is fine-tuned, and :func:`fold_sparsity` leaves plain zeroed
weights for exports and state dicts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from prunepilot.adapters.outputs import output_layers
from prunepilot.errors import invalid_parameter
from prunepilot.inputs import TRACE_BATCH, eval_copy, example_batch

#: Largest share of the weights that unstructured sparsity may zero (a policy, a tensor).
MAX_SPARSITY = 0.99

#: A weight to sparsify: the module and its parameter's name (as ``torch.nn.utils.prune`` takes).
Target = tuple[nn.Module, str]


def sparse_targets(model: nn.Module, exclude_modules: Iterable[nn.Module | str] = ()) -> list[Target]:
    """Every Conv/Linear ``weight`` of ``model`` that sparsity may zero, in module order.

    Left out, besides ``exclude_modules``: a weight shared with another module (tied weights), and
    the output projection of ``nn.MultiheadAttention``, whose weight its parent reads without
    running the projection (the mask's pre-hook would never run).

    Args:
        model: The model.
        exclude_modules: Modules, or their qualified names, to leave dense (the caller passes the
            output layers, see :func:`output_layer_names`).
    """
    excluded = {e for e in exclude_modules if isinstance(e, str)}
    excluded_ids = {id(e) for e in exclude_modules if not isinstance(e, str)}
    uses = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    inside_attention = {
        id(child) for m in model.modules() if isinstance(m, nn.MultiheadAttention) for child in m.children()
    }
    targets: list[Target] = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            continue
        if name in excluded or id(module) in excluded_ids or id(module) in inside_attention:
            continue
        weight = _dense_weight(module)
        if weight is None or uses[id(weight)] > 1:
            continue
        targets.append((module, "weight"))
    return targets


def output_layer_names(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[str, ...]:
    """Qualified names of the layers that produce the model's outputs (kept dense, as their
    channels are never pruned) and of the Conv/Linear layers whose forward never runs (their
    weights are read by a parent). ``model`` is traced on a copy and not changed.
    """
    work = eval_copy(model)
    names = {module: name for name, module in work.named_modules()}
    layers = [m for m in work.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    ran: set[nn.Module] = set()
    handles = [m.register_forward_pre_hook(lambda m, _: ran.add(m)) for m in layers]
    try:
        outputs = output_layers(work, example_batch(input_shape, TRACE_BATCH))
    finally:
        for handle in handles:
            handle.remove()
    unused = [m for m in layers if m not in ran]
    return tuple(names[m] for m in [*outputs, *unused])


def apply_sparsity(model: nn.Module, amount: float, targets: Sequence[Target] | None = None) -> int:
    """Zeroes the smallest-magnitude weights of ``targets`` behind masks (kept until
    :func:`fold_sparsity`), so that fine-tuning cannot revive them.

    Args:
        model: The model, changed in place.
        amount: A share in [0, 0.99] of all target weights pooled (global L1 magnitude: layers of
            small weights lose more).
        targets: The weights to consider; :func:`sparse_targets` of ``model`` when None.

    Returns:
        The number of target weights masked to zero (masks of earlier calls included).

    Raises:
        UsageError: when the share is not in [0, 0.99].
    """
    targets = sparse_targets(model) if targets is None else list(targets)
    _check_amount(amount)
    if amount > 0 and targets:
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=float(amount))
    return sum(int((mask == 0).sum()) for mask in _masks(targets))


def sparsify(model: nn.Module, amount: float, input_shape: tuple[int, ...]) -> list[Target]:
    """Zeroes ``amount`` of ``model``'s Conv and Linear weights pooled, its output layers aside
    (behind masks, see :func:`apply_sparsity`); returns the targets."""
    targets = sparse_targets(model, output_layer_names(model, input_shape))
    apply_sparsity(model, amount, targets)
    return targets


def fold_sparsity(model: nn.Module) -> int:
    """Makes every mask permanent (``prune.remove`` wherever a module is pruned): plain zeroed
    weights remain, without ``*_orig``/``*_mask`` entries or hooks.

    Returns:
        The number of tensors folded.
    """
    folded = 0
    for module in model.modules():
        if not prune.is_pruned(module):
            continue
        own = dict(module.named_parameters(recurse=False))
        masked = [b[: -len("_mask")] for b, _ in module.named_buffers(recurse=False) if b.endswith("_mask")]
        for name in masked:
            if name + "_orig" in own:
                prune.remove(module, name)
                folded += 1
    return folded


def sparsity_record(model: nn.Module, targets: Sequence[Target] | None = None) -> dict[str, int]:
    """How sparse ``targets`` are (:func:`sparse_targets` of ``model`` when None), masked or folded.

    Returns:
        ``{"zeros": zero weights, "weights": all weights}`` over the targets.
    """
    targets = sparse_targets(model) if targets is None else targets
    zeros = weights = 0
    with torch.no_grad():
        for module, name in targets:
            tensor = _effective(module, name)
            zeros += int((tensor == 0).sum())
            weights += tensor.numel()
    return {"zeros": zeros, "weights": weights}


def _check_amount(amount: object) -> None:
    """Raises the standard message unless ``amount`` is a number in [0, MAX_SPARSITY]."""
    number = isinstance(amount, (int, float)) and not isinstance(amount, bool)
    if not number or not 0 <= amount <= MAX_SPARSITY:  # NaN fails the comparison
        raise invalid_parameter("amount", "apply_sparsity", f"in [0, {MAX_SPARSITY}]", amount)


def _dense_weight(module: nn.Module) -> nn.Parameter | None:
    """The module's weight parameter (``weight_orig`` when already pruned), None when it has none."""
    own = dict(module.named_parameters(recurse=False))
    weight = own.get("weight_orig", own.get("weight"))
    if weight is None or isinstance(weight, nn.parameter.UninitializedParameter):
        return None
    return weight


def _effective(module: nn.Module, name: str) -> torch.Tensor:
    """The tensor the module computes with: the original times its mask while pruned."""
    mask = getattr(module, name + "_mask", None)
    return getattr(module, name) if mask is None else getattr(module, name + "_orig") * mask


def _masks(targets: Sequence[Target]) -> list[torch.Tensor]:
    return [mask for module, name in targets if (mask := getattr(module, name + "_mask", None)) is not None]
