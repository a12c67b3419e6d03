"""Global channel ranking: one threshold on scores that compare across groups (LAMP)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from prunepilot.policies.criteria import get_criterion
from prunepilot.policies.groups import build_graph, example_inputs, named_groups
from prunepilot.policies.rewrites import prunable_copy


def group_scores(
    model: nn.Module, input_shape: tuple[int, ...], names: Iterable[str], criterion: str = "lamp"
) -> dict[str, torch.Tensor]:
    """The per-channel scores by ``criterion`` of the groups ``names`` (the searched ones: a group
    left whole may not be scorable); ``model`` is not changed.

    LAMP scores compare across groups (each group's strongest channel scores 1), so that one
    threshold over all of them ranks channels globally.
    """
    work = prunable_copy(model)
    inputs = example_inputs(input_shape)
    groups = named_groups(work, build_graph(work, inputs), inputs)
    importance = get_criterion(criterion).make()
    wanted = set(names)
    return {name: importance(group).detach().flatten().cpu() for name, group in groups.items()
            if name in wanted}  # fmt: skip


def global_ratios(scores: dict[str, torch.Tensor], threshold: float) -> dict[str, float]:
    """Per group, the share of channels scoring below ``threshold``."""
    return {name: float((s < threshold).float().mean()) for name, s in scores.items()}
