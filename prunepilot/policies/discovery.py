"""Discovery: what a search may prune in a model, found once, under a time and memory bound.

The groups (Torch-Pruning's dependency graph), the removable blocks, and the groups left whole
with the reason: those the graph cannot prune channel by channel, and those whose pruning breaks
the model when tried (a layer Torch-Pruning does not handle). A model whose discovery runs past
either bound ends with one line naming the step and the bound (see :mod:`prunepilot.bounds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from torch import nn

from prunepilot.bounds import GIB, bounded, default_memory_bound
from prunepilot.errors import UsageError, first_line, invalid_parameter
from prunepilot.policies.apply import apply_policy, unprunable_groups
from prunepilot.policies.blocks import discover_blocks
from prunepilot.policies.groups import GroupInfo, survey_groups
from prunepilot.policies.policy import Policy

#: Seconds discovery may take by default.
DEFAULT_SECONDS = 120.0


@dataclass(frozen=True)
class DiscoveryBounds:
    """How long and how much memory discovery may take.

    Attributes:
        seconds: Wall-clock seconds for each step.
        memory_gb: GiB each step may add to the process; None for half the machine's memory.
    """

    seconds: float = DEFAULT_SECONDS
    memory_gb: float | None = None

    def __post_init__(self) -> None:
        if not _positive(self.seconds):
            raise invalid_parameter("seconds", "DiscoveryBounds", "a number > 0", self.seconds)
        if self.memory_gb is not None and not _positive(self.memory_gb):
            raise invalid_parameter("memory_gb", "DiscoveryBounds", "None or a number > 0", self.memory_gb)

    @property
    def memory_bytes(self) -> int | None:
        return default_memory_bound() if self.memory_gb is None else int(self.memory_gb * GIB)


@dataclass(frozen=True)
class Discovery:
    """What a search may prune in a model.

    Attributes:
        groups: The prunable groups, in module order.
        blocks: The removable blocks, in module order.
        left_whole: Group name -> why it is never pruned.
    """

    groups: tuple[GroupInfo, ...]
    blocks: tuple[str, ...]
    left_whole: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "left_whole", MappingProxyType(dict(self.left_whole)))


def discover(
    model: nn.Module,
    input_shape: tuple[int, ...],
    bounds: DiscoveryBounds | None = None,
    ratio_max: float | None = None,
) -> Discovery:
    """Traces ``model`` (not changed) and lists what a search may prune, each step under ``bounds``;
    a group is tried with one channel (one head) taken out, and with ``ratio_max`` of them.

    Raises:
        UsageError: when the model cannot be traced, has nothing to prune, or a step runs past a
            bound (naming the step and the bound).
    """
    bounds = bounds or DiscoveryBounds()

    def step(what: str):
        return bounded(what, bounds.seconds, bounds.memory_bytes, "discovery")

    with step("Tracing the model's dependency graph"):
        groups, left = survey_groups(model, input_shape)
    with step("Finding removable blocks"):
        blocks = discover_blocks(model, input_shape)
    with step("Removing every removable block"):
        blocks, kept_blocks = removable_together(model, blocks, input_shape)
    with step("Trying each group's pruning"):
        broken = unprunable_groups(model, [g.name for g in groups], input_shape, ratio_max)
    kept = tuple(g for g in groups if g.name not in broken)
    if not kept:
        raise UsageError(
            "The model has no prunable group: prunepilot prunes the output channels of Conv and Linear "
            "layers that do not produce the model's output"
            + (f" (left whole: {dict(list({**left, **broken}.items())[:3])})." if left or broken else ".")
        )
    return Discovery(kept, tuple(blocks), {**left, **broken, **kept_blocks})


def removable_together(
    model: nn.Module, blocks: list[str], input_shape: tuple[int, ...]
) -> tuple[list[str], dict[str, str]]:
    """The blocks a policy may remove all at once, and the blocks kept with the reason: while
    removing every one leaves a model that cannot be pruned (Torch-Pruning cannot trace a model
    emptied of its blocks, or it no longer runs), the last is kept; a policy of the space is then
    never such a model."""
    kept: dict[str, str] = {}
    while blocks:
        try:
            apply_policy(model, Policy(removed_blocks=tuple(blocks)), input_shape)
            break
        except Exception as exc:  # noqa: BLE001 - any failure of the emptied model keeps a block
            first = first_line(exc)
            reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
            kept[blocks[-1]] = ("kept as a block (its channels are still searched): removing it with every "
                                f"other removable block leaves a model that cannot be pruned ({reason})")
            blocks = blocks[:-1]
    return blocks, kept


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
