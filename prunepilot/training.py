"""The fast trial score: BatchNorm recalibration and a short fine-tune.

Right after pruning, BatchNorm running statistics no longer match the activations; recomputing
them on a few training batches (adaptive BN, as in EagleEye) restores a score that ranks
candidates, and a short fine-tune sharpens it.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from prunepilot.gate import NullGate


def recalibrate_batchnorm(
    model: nn.Module,
    dataset: Dataset,
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
    loader = _shuffled(dataset, batch_size, seed=0)
    gate = gate or NullGate()
    with torch.no_grad():
        for inputs, _ in itertools.islice(_forever(loader), batches):
            with gate.compute():
                model(inputs.to(device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
    return len(norms)


def fine_tune(
    model: nn.Module,
    dataset: Dataset,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    device: str | torch.device = "cpu",
    gate: NullGate | None = None,
) -> float:
    """Trains ``model`` for ``steps`` mini-batches with AdamW and a cosine-decayed learning rate.

    Returns:
        The mean training loss over the last ten steps (nan when ``steps`` is 0).
    """
    if steps <= 0:
        return float("nan")
    loader = _shuffled(dataset, batch_size, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    losses = []
    gate = gate or NullGate()
    for inputs, labels in itertools.islice(_forever(loader), steps):
        with gate.compute():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs.to(device)), labels.to(device))
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    model.eval()
    tail = losses[-10:]
    return sum(tail) / len(tail)


def _forever(loader: DataLoader):
    while True:
        yield from loader


def _shuffled(dataset: Dataset, batch_size: int, seed: int) -> DataLoader:
    """Seeded shuffled batches of ``dataset``, full ones only when there is more than one."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=generator, drop_last=len(dataset) > batch_size
    )
