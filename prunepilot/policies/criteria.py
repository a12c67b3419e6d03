"""Importance criteria: a registry from a name to a Torch-Pruning importance.

A criterion scores the channels of one dependency group; the lowest-scoring channels are removed.
Adding a criterion is one :func:`register_criterion` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch_pruning as tp


@dataclass(frozen=True)
class Criterion:
    """A named channel-importance criterion.

    Rules a criterion keeps: ``make()`` returns a *new* Torch-Pruning importance (a callable from a
    group to a 1-D tensor of per-channel scores, higher = keep), and holds no state between calls.

    Attributes:
        name: The name used in policies and on the command line.
        make: Builds the importance object.
        needs_gradients: True when scoring reads ``.grad`` (gradients of the training loss are
            computed on a few training batches before scoring).
        needs_batchnorm: True when scoring reads BatchNorm scales (only groups with a BatchNorm).
        description: One line for ``--dry-run`` and the docs.
    """

    name: str
    make: Callable[[], tp.importance.Importance]
    needs_gradients: bool = False
    needs_batchnorm: bool = False
    description: str = ""


_REGISTRY: dict[str, Criterion] = {}


def register_criterion(criterion: Criterion) -> Criterion:
    """Adds a criterion to the registry (replacing one of the same name) and returns it."""
    _REGISTRY[criterion.name] = criterion
    return criterion


def get_criterion(name: str) -> Criterion:
    """Looks a criterion up by name.

    Raises:
        ValueError: naming the accepted criteria.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown criterion {name!r}; accepted: {', '.join(criterion_names())}.") from None


def criterion_names() -> list[str]:
    """The registered criterion names, in registration order."""
    return list(_REGISTRY)


register_criterion(
    Criterion(
        "l1",
        lambda: tp.importance.GroupMagnitudeImportance(p=1),
        description="L1 norm of the channel's weights across the group",
    )
)
register_criterion(
    Criterion(
        "l2",
        lambda: tp.importance.GroupMagnitudeImportance(p=2),
        description="L2 norm of the channel's weights across the group",
    )
)
register_criterion(Criterion("random", tp.importance.RandomImportance, description="uniformly random scores"))
register_criterion(
    Criterion(
        "taylor",
        tp.importance.GroupTaylorImportance,
        needs_gradients=True,
        description="first-order Taylor estimate |w * dL/dw| on training batches",
    )
)
register_criterion(
    Criterion(
        "bn_scale",
        tp.importance.BNScaleImportance,
        needs_batchnorm=True,
        description="magnitude of the BatchNorm scale (groups with a BatchNorm only)",
    )
)
register_criterion(
    Criterion(
        "fpgm",
        tp.importance.FPGMImportance,
        description="distance to the geometric median of the group's filters",
    )
)
register_criterion(
    Criterion(
        "lamp",
        tp.importance.LAMPImportance,
        description="layer-adaptive magnitude score (ranks like L2 inside one group)",
    )
)
