"""Prunable groups: the channels that must shrink together, found by Torch-Pruning's graph.

A group is named by the qualified name of its root module (the first Conv/Linear whose output
channels it removes), which is stable for a given model class.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from types import SimpleNamespace

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.dependency import index_mapping as tp_index_mapping

from prunepilot.adapters.outputs import LogitsModel, output_layers
from prunepilot.errors import UsageError, first_line
from prunepilot.evaluators.cost import flops_by_module
from prunepilot.inputs import TRACE_BATCH, eval_copy, example_batch
from prunepilot.policies.heads import Attention, find_attention, head_tables
from prunepilot.policies.rewrites import prunable_form


@dataclass(frozen=True)
class GroupInfo:
    """What a search needs to know of one prunable group (plain data).

    Attributes:
        name: The root module's qualified name.
        channels: Number of coupled channels in the group.
        modules: Qualified names of the layers whose output channels shrink with the group.
        has_batchnorm: Whether a BatchNorm belongs to the group (``bn_scale`` needs one).
        flops_share: Share of the model's FLOPs spent in ``modules`` (0..1).
        heads: The attention heads the group's channels make up (pruned whole heads at a time);
            0 when the group is not an attention module's.
    """

    name: str
    channels: int
    modules: tuple[str, ...]
    has_batchnorm: bool
    flops_share: float
    heads: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def example_inputs(input_shape: tuple[int, ...], batch: int = TRACE_BATCH) -> torch.Tensor:
    """A random input batch of one sample shape (without the batch dimension)."""
    return example_batch(input_shape, batch)


def build_graph(model: nn.Module, inputs: torch.Tensor) -> tp.DependencyGraph:
    """Builds Torch-Pruning's dependency graph of ``model`` (traced through autograd).

    Raises:
        UsageError: when the model cannot be traced.
    """
    tables = head_tables(find_attention(model))  # per-head parameters are sliced by heads_removed
    # A structured output is traced as the model gives it: packing its tensors side by side would
    # send the graph's index mapping through every output position of them.
    raw = isinstance(model, LogitsModel) and model.outputs is not None
    try:
        with torch.enable_grad(), _linear_output_splits():
            return tp.DependencyGraph().build_dependency(
                model, example_inputs=inputs, forward_fn=(lambda m, x: m.raw(x)) if raw else None,
                ignored_layers=[], ignored_params=tables, verbose=False,
            )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - any tracing failure is reported as one line
        failure = exc
    try:  # whose failure: the model's own forward pass, or the graph's (run only once tracing failed)
        with torch.no_grad():
            model(inputs)
    except Exception as exc:  # noqa: BLE001 - the model failing on its input is bad input
        shape = tuple(inputs.shape[1:])
        raise UsageError(
            f"The model cannot be traced for pruning: it fails on an input of shape {shape} "
            f"({type(exc).__name__}: {first_line(exc, 200)})."
        ) from exc
    where, first = _failed_operation(failure, model), first_line(failure, 200)
    raise UsageError(
        f"The model cannot be traced for pruning: Torch-Pruning cannot follow its channels{where} "
        f"({type(failure).__name__}: {first}). The model runs; this is a limit of the dependency graph: "
        "an operation written with sizes read from the tensor (x.flatten(1), x.reshape(b, -1)) often "
        "lets it through."
    ) from failure


@contextlib.contextmanager
def _linear_output_splits() -> Iterator[None]:
    """Torch-Pruning maps channels through ``split`` along dim 1 only; a linear layer's output split
    along its last dim (GPT-2's ``c_attn(x).split(width, dim=2)`` into queries, keys and values)
    splits the same channels, so it is mapped as if along dim 1 while the graph is built."""
    original = tp_index_mapping.update_split_index_mapping

    def update(graph: tp.DependencyGraph, node) -> None:
        saved = node.grad_fn
        sizes = tuple(getattr(saved, "_saved_self_sym_sizes", ()))
        last = len(sizes) >= 3 and getattr(saved, "_saved_dim", None) in (len(sizes) - 1, -1)
        if not (last and any(isinstance(n.module, nn.Linear) for n in node.inputs)):
            return original(graph, node)
        node.grad_fn = SimpleNamespace(_saved_dim=1, _saved_self_sym_sizes=sizes)
        try:
            return original(graph, node)
        finally:
            node.grad_fn = saved

    tp_index_mapping.update_split_index_mapping = update
    try:
        yield
    finally:
        tp_index_mapping.update_split_index_mapping = original


def _failed_operation(exc: BaseException, model: nn.Module) -> str:
    """`` through a reshape (ViewBackward0) after 'patch_embed'``: the operation the graph failed
    on and the nearest module before it, from the failing frame's node; empty when unknown."""
    frame, node = exc.__traceback__, None
    while frame is not None:
        found = frame.tb_frame.f_locals.get("node")
        node = found if isinstance(found, tp.dependency.Node) else node
        frame = frame.tb_next
    if node is None:
        return ""
    operation = type(node.grad_fn).__name__ if node.grad_fn is not None else type(node.module).__name__
    names = {module: name for name, module in model.named_modules() if name}
    seen, queue = set(), list(node.inputs)
    while queue:  # the nearest named module upstream
        upstream = queue.pop(0)
        if upstream.module in names:
            return f" through {operation} after {names[upstream.module]!r}"
        if id(upstream) not in seen:
            seen.add(id(upstream))
            queue.extend(upstream.inputs)
    return f" through {operation}"


def named_groups(
    model: nn.Module, graph: tp.DependencyGraph, inputs: torch.Tensor
) -> dict[str, tp.dependency.Group]:
    """Every prunable group of ``model``, keyed by its root module's qualified name (see
    :func:`survey_groups` for the groups left out)."""
    return {name: group for name, group, reason in _classified(model, graph, inputs) if reason is None}


def attention_of(
    graph: tp.DependencyGraph, group: tp.dependency.Group, attention: list[Attention]
) -> Attention | None:
    """The attention module whose heads ``group``'s channels are (None for other groups)."""
    by_projection = {p: a for a in attention for p in a.projections}
    return next((by_projection[d.target.module] for d, _ in group if d.target.module in by_projection
                 and graph.is_out_channel_pruning_fn(d.handler)), None)  # fmt: skip


def _classified(model: nn.Module, graph: tp.DependencyGraph, inputs: torch.Tensor):
    """(name, group, reason it is left whole or None) for every group but the output layers'."""
    names = {module: name for name, module in model.named_modules()}
    ignored = output_layers(model, inputs)
    projections = {p for a in find_attention(model) for p in a.projections}
    for group in graph.get_all_groups(ignored_layers=list(ignored)):
        reason = None
        if any(_is_grouped_conv(dep.target.module) for dep, _ in group):
            reason = "a grouped convolution (channels cannot be removed one by one)"
        elif any(d.target.module in projections and not graph.is_out_channel_pruning_fn(d.handler)
                 for d, _ in group):  # fmt: skip
            reason = "the width feeding attention (residual stream, embeddings, layer norms)"
        yield names[group[0].dep.target.module], group, reason


def _is_grouped_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd) and 1 < module.groups < module.in_channels


def discover_groups(model: nn.Module, input_shape: tuple[int, ...]) -> list[GroupInfo]:
    """Lists the prunable groups of ``model`` without changing it.

    Raises:
        UsageError: when the model cannot be traced or has nothing to prune.
    """
    groups, _ = survey_groups(model, input_shape)
    if not groups:
        raise UsageError(
            "The model has no prunable group: prunepilot prunes the output channels of "
            "Conv and Linear layers that do not produce the model's output."
        )
    return groups


def survey_groups(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[list[GroupInfo], dict[str, str]]:
    """The prunable groups of ``model`` (perhaps none), and the groups left whole with the reason
    (besides the output layers'), from one trace; ``model`` is not changed.

    Left whole are a grouped convolution (``1 < groups < in_channels``), whose channels cannot go one
    by one, and the width that feeds attention projections (a transformer's residual stream and
    embeddings), by which positions, heads and every layer norm are sized.

    Raises:
        UsageError: when the model cannot be traced.
    """
    work = eval_copy(model)
    left = prunable_form(work)  # as every pruning will see it
    inputs = example_inputs(input_shape)
    graph = build_graph(work, inputs)
    names = {module: name for name, module in work.named_modules()}
    attention = find_attention(work)
    per_module = flops_by_module(work, inputs[:1])
    total = max(sum(per_module.values()), 1)
    infos = []
    for name, group, reason in _classified(work, graph, inputs):
        if reason is not None:
            left[name] = reason
            continue
        layers = []
        has_bn = False
        for dep, _ in group:
            module = dep.target.module
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                has_bn = True
            if graph.is_out_channel_pruning_fn(dep.handler) and isinstance(
                module, (nn.modules.conv._ConvNd, nn.Linear)
            ):
                layers.append(names[module])
        layers = sorted(set(layers), key=list(names.values()).index)
        share = sum(per_module.get(layer, 0) for layer in layers) / total
        owner = attention_of(graph, group, attention)
        heads = owner.heads if owner else 0
        infos.append(GroupInfo(name, len(group[0].idxs), tuple(layers), has_bn, share, heads))
    order = list(names.values())
    infos.sort(key=lambda info: order.index(info.name))
    return infos, left
