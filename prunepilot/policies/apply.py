"""Applying a policy: a physically smaller copy of the model, and the plan that re-creates it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

import torch
import torch_pruning as tp
from torch import nn

from prunepilot.adapters import Batch, Loss
from prunepilot.errors import UsageError, first_line
from prunepilot.families.features import keep_features
from prunepilot.families.sparsity import fold_sparsity, sparsify
from prunepilot.inputs import eval_copy
from prunepilot.policies.blocks import remove_blocks
from prunepilot.policies.criteria import get_criterion
from prunepilot.policies.groups import attention_of, build_graph, example_inputs, named_groups
from prunepilot.policies.heads import Attention, find_attention, heads_removed
from prunepilot.policies.policy import Policy, kept_channels
from prunepilot.policies.rewrites import prunable_copy


@dataclass(frozen=True)
class Plan:
    """Exactly what a policy took out of a model, so that :func:`apply_plan` can take the same out of
    a fresh one.

    Attributes:
        channels: Group name -> removed channel indices, in the order the groups were pruned.
        removed_blocks: The blocks removed whole (the policy's ``removed_blocks``).
        input_features: The input features kept (the policy's ``input_features``); None: all.
    """

    channels: Mapping[str, list[int]] = field(default_factory=dict)
    removed_blocks: tuple[str, ...] = ()
    input_features: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", MappingProxyType({k: list(v) for k, v in self.channels.items()}))
        object.__setattr__(self, "removed_blocks", tuple(self.removed_blocks))
        if self.input_features is not None:
            object.__setattr__(self, "input_features", tuple(int(i) for i in self.input_features))

    def to_dict(self) -> dict:
        """Plain data, as ``plan.json`` stores it (channels under ``removed``; ``input_features``
        only when features were cut)."""
        data = {"removed_blocks": list(self.removed_blocks), "removed": dict(self.channels)}
        if self.input_features is not None:
            data["input_features"] = list(self.input_features)
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> Plan:
        """The inverse of :meth:`to_dict`; plans written before ``removed_blocks`` call it ``skipped``."""
        return cls(data.get("removed", {}), tuple(data.get("removed_blocks", data.get("skipped", []))),
                   data.get("input_features"))  # fmt: skip


class PrunedModel(NamedTuple):
    """What :func:`apply_policy` returns: the pruned copy and its plan."""

    model: nn.Module
    plan: Plan


def apply_policy(
    model: nn.Module,
    policy: Policy,
    input_shape: tuple[int, ...],
    *,
    gradient_batches: Iterable[Batch] = (),
    seed: int = 0,
    loss: Loss | None = None,
    keep_masks: bool = False,
) -> PrunedModel:
    """Returns a pruned copy of ``model`` and its plan; ``model`` itself is never changed.

    The policy's blocks are removed first (see :mod:`prunepilot.policies.blocks`); then every
    remaining group's channels are scored, on the unpruned copy, by the group's criterion, and the
    lowest-scoring channels of each group are removed (with everything coupled to them). Groups
    keep the names they have in the whole model; those whose every layer was in a removed block
    are gone with it.

    Args:
        model: The model to prune.
        policy: Group name -> (ratio, criterion), channel rounding, and the blocks removed.
        input_shape: Shape of one input sample, without the batch dimension.
        gradient_batches: Training batches for criteria that need gradients (taylor).
        seed: Seeds the random criterion.
        loss: What those gradients are of (cross-entropy by default).
        keep_masks: The policy's sparsity stays behind ``torch.nn.utils.prune`` masks (so that a
            fine-tune keeps the zeros; :func:`~prunepilot.families.sparsity.fold_sparsity` makes them
            plain weights); else the zeroed weights are plain.

    Returns:
        The pruned model (in eval mode) and its :class:`Plan` (:func:`apply_plan` replays it).

    Raises:
        UsageError: when the policy names a group or a module the model lacks, removes a module
            whose removal changes the model's output shape, or a criterion cannot score a group
            (``bn_scale`` on a group without BatchNorm).
    """
    pruned, graph, groups, gone = _without_blocks(model, policy.removed_blocks, input_shape)
    policy.check_groups([*groups, *gone])
    active = {name: s for name, s in policy.groups.items() if s.ratio > 0 and name not in gone}
    if any(get_criterion(s.criterion).needs_gradients for s in active.values()):
        _accumulate_gradients(pruned, gradient_batches, loss or Loss())

    attention = find_attention(pruned)
    removals = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, setting in active.items():
            group = groups[name]
            heads = attention_of(graph, group, attention)
            # An attention group loses whole heads: its units are heads (see Attention.channels_of).
            units = heads.heads if heads else len(group[0].idxs)
            keep = kept_channels(units, setting.ratio, 1 if heads else policy.round_to)
            if keep >= units:
                continue
            scores = get_criterion(setting.criterion).make()(group)
            if scores is None:
                raise UsageError(
                    f"The criterion {setting.criterion!r} cannot score group {name!r} "
                    "(it has no layer that criterion reads)."
                )
            scores = scores.detach().flatten().cpu()
            if heads:  # a head's score: its channels' (in each part of a fused projection)
                scores = torch.stack([scores[heads.channels_of([u])].sum() for u in range(units)])
            order = torch.argsort(scores, stable=True)
            gone = [int(u) for u in order[: units - keep]]
            channels = heads.channels_of(gone) if heads else gone
            removals.append((name, sorted(int(group[0].idxs[c]) for c in channels)))

    _remove(graph, groups, removals)
    pruned.zero_grad(set_to_none=True)
    if policy.input_features is not None:  # after the channels: the graph was traced at the full input
        pruned = keep_features(pruned, input_shape, policy.input_features)
    if policy.sparsity:  # what is zeroed is what is left
        sparsify(pruned, policy.sparsity, input_shape)
        if not keep_masks:
            fold_sparsity(pruned)
    return PrunedModel(pruned.eval(), Plan(dict(removals), policy.removed_blocks, policy.input_features))


def apply_plan(model: nn.Module, plan: Plan, input_shape: tuple[int, ...]) -> nn.Module:
    """Returns a copy of ``model`` with exactly what ``plan`` records taken out (the blocks, then the
    channels, then the input features): the pruned architecture, re-created from the original
    class (in a :class:`~prunepilot.families.features.KeptFeatures` when features were cut).

    Raises:
        UsageError: when the plan names a module or group the model lacks or a channel it does not
            have.
    """
    pruned, graph, groups, _ = _without_blocks(model, plan.removed_blocks, input_shape)
    unknown = sorted(set(plan.channels) - set(groups))
    if unknown:
        raise UsageError(f"The plan names group(s) {unknown} that the model does not have.")
    for name, drop in plan.channels.items():
        channels = len(groups[name][0].idxs)
        if any(not 0 <= i < channels for i in drop) or len(set(drop)) >= channels:
            raise UsageError(
                f"The plan removes channels of group {name!r} that it cannot ({channels} channels)."
            )
    _remove(graph, groups, list(plan.channels.items()))
    if plan.input_features is not None:
        pruned = keep_features(pruned, input_shape, plan.input_features)
    return pruned.eval()


class GroupSize(NamedTuple):
    """A group of a model whose blocks were removed (see :func:`group_sizes`).

    Attributes:
        local_name: Its name in that smaller model (its root layer's), which can differ from its
            name in the whole model (see :func:`apply_policy`).
        channels: The root layer's channel indices.
        unit: Channels removed together: an attention group's channels of one head, else 1.
    """

    local_name: str
    channels: list[int]
    unit: int


def group_sizes(
    model: nn.Module, blocks: tuple[str, ...], input_shape: tuple[int, ...]
) -> dict[str, GroupSize]:
    """The groups of ``model`` once ``blocks`` are removed, keyed by their names in the whole model."""
    pruned, graph, groups, _ = _without_blocks(model, blocks, input_shape)
    names = {module: name for name, module in pruned.named_modules()}
    attention = find_attention(pruned)
    sizes = {}
    for name, group in groups.items():
        heads = attention_of(graph, group, attention)
        root = names[group[0].dep.target.module]
        unit = heads.channels_per_head if heads else 1
        sizes[name] = GroupSize(root, [int(i) for i in group[0].idxs], unit)
    return sizes


def unprunable_groups(
    model: nn.Module, names: Iterable[str], input_shape: tuple[int, ...], ratio: float | None = None
) -> dict[str, str]:
    """The groups among ``names`` that cannot be pruned, with the reason: taking one channel (one
    head) out of them, or ``ratio`` of them, breaks the model's forward pass or changes its output
    shape, or (an attention group) the model without its first head does not compute what the model
    with that head's values zeroed computes: its heads are not laid out as
    :class:`~prunepilot.policies.heads.Attention` reads them. All groups are tried at once first,
    then one by one only when that fails.
    """
    names = list(names)
    inputs = example_inputs(input_shape)
    shape = _output_shape(eval_copy(model), inputs)
    attention_groups: list[str] = []  # found by the first attempt

    def attempt(selected: list[str], share: float | str | None) -> str | None:
        """``share`` of each group taken out (None: one channel or head); ``"heads"``: the first head
        of each attention group, compared with the model whose first heads' values are zeroed."""
        try:
            pruned, graph, groups, _ = _without_blocks(model, (), input_shape)
            attention = find_attention(pruned)
            if not attention_groups:
                attention_groups.extend(n for n in names if attention_of(graph, groups[n], attention))
            removals, zeroed = [], prunable_copy(model)
            for name in selected:
                heads = attention_of(graph, groups[name], attention)
                units = heads.heads if heads else len(groups[name][0].idxs)
                drop = 1 if share in (None, "heads") else units - kept_channels(units, share, 1)
                if 0 < drop < units and (share != "heads" or heads is not None):
                    channels = heads.channels_of(range(drop)) if heads else range(drop)
                    removals.append((name, [int(groups[name][0].idxs[c]) for c in channels]))
                    if share == "heads":
                        _zero_head(zeroed, heads, pruned)
            _remove(graph, groups, removals)
            after = _output_shape(pruned, inputs)
            if after == shape and share == "heads" and removals and not _same_outputs(pruned, zeroed, inputs):
                return "its heads are not laid out as its projections read them (removing one changes others)"
        except Exception as exc:  # noqa: BLE001 - any failure is the group's reason to stay whole
            reason = f"pruning it breaks the model ({type(exc).__name__}: {first_line(exc, 160)})"
            if share == "heads" and "is invalid for input of size" in str(exc):
                reason += ("; its forward reshapes the heads back to the input's width (reshape(B, N, C)): "
                           "reshape(B, N, -1) lets heads go")  # fmt: skip
            return reason
        return None if after == shape else f"pruning it changes the output shape from {shape} to {after}"

    broken: dict[str, str] = {}
    passes = (["heads"] if find_attention(model) else []) + [None] + ([ratio] if ratio is not None else [])
    for share in passes:
        if attempt([n for n in names if n not in broken], share) is None:
            continue
        for name in attention_groups if share == "heads" else names:  # then one by one
            if name not in broken and (reason := attempt([name], share)) is not None:
                broken[name] = reason if share in (None, "heads") else f"{reason} at a ratio of {share:g}"
    return broken


def _zero_head(model: nn.Module, attention: Attention, traced: nn.Module) -> None:
    """Zeroes the first head's values in ``model``'s copy of ``attention`` (found in ``traced``, a copy
    of ``model``): what that head adds to the output is then nothing, as when it is removed."""
    names = {module: name for name, module in traced.named_modules()}
    values_start = 2 * attention.heads * attention.head_dim if attention.fused else 0  # the last part
    value_channels = [c for c in attention.channels_of([0]) if c >= values_start]
    layer = attention.projections[-1]
    own = model.get_submodule(names[layer])
    with torch.no_grad():
        own.weight[value_channels] = 0
        if own.bias is not None:
            own.bias[value_channels] = 0


def _same_outputs(model: nn.Module, other: nn.Module, inputs: torch.Tensor) -> bool:
    with torch.no_grad():
        first, second = model(inputs), other(inputs)
    if not isinstance(first, torch.Tensor):
        return True  # outputs of other kinds: the shape check is all
    finite = torch.isfinite(second)
    scale = float(second[finite].abs().max()) if finite.any() else 1.0
    return torch.allclose(first, second, rtol=1e-4, atol=1e-4 * (scale or 1.0), equal_nan=True)


def _without_blocks(
    model: nn.Module, blocks: tuple[str, ...], input_shape: tuple[int, ...]
) -> tuple[nn.Module, tp.DependencyGraph, dict[str, tp.dependency.Group], set[str]]:
    """A copy of ``model`` with ``blocks`` removed, its dependency graph, and its groups
    named as they are in the whole model; and the names of the whole model's groups that went with
    the blocks.

    A group is named by its root layer, which can lie in a removed block while the group lives on
    (the residual stream of ``x + f(x)`` blocks is named after the last block's layer): such a
    group keeps the name of the whole model's group it shares a layer with.

    Raises:
        UsageError: when ``blocks`` names a module the model lacks, or removing it changes the
            model's output shape (only blocks with an identity shortcut can be removed).
    """
    inputs = example_inputs(input_shape)
    pruned = prunable_copy(model)
    if not blocks:
        graph = build_graph(pruned, inputs)
        return pruned, graph, named_groups(pruned, graph, inputs), set()
    whole = prunable_copy(model)
    whole_graph = build_graph(whole, inputs)
    before = {name: _layers(whole, group) for name, group in named_groups(whole, whole_graph, inputs).items()}
    shape = _output_shape(pruned, inputs)
    remove_blocks(pruned, blocks)
    if _output_shape(pruned, inputs) != shape:
        raise UsageError(
            f"Removing {list(blocks)} changes the model's output shape from {shape} to "
            f"{_output_shape(pruned, inputs)}; only blocks with an identity shortcut can be removed."
        )
    graph = build_graph(pruned, inputs)
    after = named_groups(pruned, graph, inputs)
    groups = {}
    for name, group in after.items():
        layers = _layers(pruned, group)
        if name not in before:
            name = next((old for old, kept in before.items() if old not in after and kept & layers), name)
        groups[name] = group
    return pruned, graph, groups, set(before) - set(groups)


def _layers(model: nn.Module, group: tp.dependency.Group) -> set[str]:
    """Qualified names of the modules a group touches."""
    names = {module: name for name, module in model.named_modules()}
    return {names[dep.target.module] for dep, _ in group if dep.target.module in names}


def _output_shape(model: nn.Module, inputs: torch.Tensor) -> tuple:
    with torch.no_grad():
        outputs = model(inputs)
    return tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else ()


def _remove(graph, groups: dict, removals: list[tuple[str, list[int]]]) -> None:
    """Removes each group's channels; an attention group's are whole heads, and its module's head
    count and per-head parameters follow (see :func:`~prunepilot.policies.heads.heads_removed`)."""
    attention = find_attention(graph.model)
    owners = [(attention_of(graph, groups[name], attention), drop) for name, drop in removals]
    for name, drop in removals:
        root = groups[name][0].dep.target.module
        graph.get_pruning_group(root, groups[name][0].dep.handler, drop).prune()
    for owner, drop in owners:
        if owner is not None:
            heads_removed(owner, drop)


def _accumulate_gradients(model: nn.Module, batches: Iterable[Batch], loss: Loss) -> None:
    model.zero_grad(set_to_none=True)
    seen = 0
    loss_of = loss.bind()
    with torch.enable_grad():
        for batch in batches:
            loss_of(model, batch, "cpu").backward()
            seen += 1
    if seen == 0:
        raise UsageError("The taylor criterion needs training batches to compute gradients.")
