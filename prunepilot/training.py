"""The fast trial score: BatchNorm recalibration and a short fine-tune.

Right after pruning, BatchNorm running statistics no longer match the activations; recomputing
them on a few training batches (adaptive BN, as in EagleEye) restores a score that ranks
candidates, and a short fine-tune sharpens it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from prunepilot.adapters import Batch, Loss, Split
from prunepilot.adapters import batches as read_batches
from prunepilot.families.distill import Teacher, distilled
from prunepilot.gate import NullGate


class NonFiniteLoss(FloatingPointError):
    """Fine-tuning stopped: the loss became NaN or infinite (a trial then fails with this reason)."""


def recalibrate_batchnorm(
    model: nn.Module,
    dataset: Dataset | DataLoader | Split,
    batches: int,
    batch_size: int,
    device: str | torch.device = "cpu",
    gate: NullGate | None = None,
) -> int:
    """Recomputes BatchNorm running statistics as a plain average over ``batches`` batches.

    Returns:
        The number of BatchNorm layers recalibrated (0 leaves the model untouched).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches <= 0:
        return 0
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average
    model.train()
    gate = gate or NullGate()
    with torch.no_grad():
        shuffled = read_batches(dataset, batch_size, shuffle=True, seed=0)
        for inputs, _ in itertools.islice(_forever(shuffled), batches):
            with gate.compute():
                model(inputs.to(device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
    return len(norms)


def fine_tune(
    model: nn.Module,
    dataset: Dataset | DataLoader | Split,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    device: str | torch.device = "cpu",
    gate: NullGate | None = None,
    loss: Loss | None = None,
    *,
    teacher: Teacher | None = None,
    regularize: Callable[[nn.Module], None] | None = None,
) -> float:
    """Trains ``model`` for ``steps`` mini-batches of ``loss`` (cross-entropy by default) with AdamW
    and a cosine-decayed learning rate.

    Args:
        teacher: Distil toward this model's class scores as well (see :mod:`prunepilot.families.distill`).
        regularize: Called with the model after each backward pass, before the optimizer's step
            (to add a penalty's gradient, as the slimming warm-up does).

    Returns:
        The mean training loss over the last ten steps (nan when ``steps`` is 0).

    Raises:
        NonFiniteLoss: when the loss becomes NaN or infinite (training on would train on nothing).
    """
    if steps <= 0:
        return float("nan")
    loss_of = (loss or Loss()).bind()
    if teacher is not None:
        loss_of = distilled(loss_of, teacher, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    model.train()
    losses = []
    gate = gate or NullGate()
    shuffled = read_batches(dataset, batch_size, shuffle=True, seed=seed)
    for batch in itertools.islice(_forever(shuffled), steps):
        with gate.compute():
            optimizer.zero_grad(set_to_none=True)
            value = loss_of(model, batch, device)
            if not torch.isfinite(value):
                raise NonFiniteLoss(
                    f"the training loss became {value.item()} at step {len(losses) + 1} of {steps} "
                    f"(learning rate {lr:g}); lower --lr or check the training data"
                )
            value.backward()
            if regularize is not None:
                regularize(model)
            optimizer.step()
            schedule.step()
            losses.append(value.item())
    model.eval()
    tail = losses[-10:]
    return sum(tail) / len(tail)


def _forever(batches: Iterable[Batch]) -> Iterator[Batch]:
    """``batches`` epoch after epoch (a shuffled one in a new order each time)."""
    while True:
        yield from batches
