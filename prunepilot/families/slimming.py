"""The slimming warm-up: train the base model briefly with an L1 penalty on its BatchNorm scales.

Network slimming (Liu et al., 2017) drives the scales of unneeded channels toward zero, so that the
``bn_scale`` criterion (and the magnitude criteria, which read BatchNorm weights too) find channels
whose removal costs little. The penalty's gradient is added after each backward pass, as
Torch-Pruning's ``BNScalePruner.regularize`` adds it: ``reg * sign(scale)``. With AdamW the step
this takes is normalised, so ``reg`` acts as a threshold: scales whose loss gradient is much smaller
than ``reg`` drift to zero at about the learning rate a step, the rest keep their value.

The warm-up's model is cached by its inputs (the base model's weights, the data's first batch and
the settings), so that a resumed run and ``prunepilot export`` prune the same model.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunepilot.adapters import first_batch
from prunepilot.inputs import eval_copy
from prunepilot.rundir import cache_dir, write_atomically
from prunepilot.training import fine_tune
from prunepilot.trial import TrialSettings

__all__ = ["SMALL_SCALE", "batchnorm_scales", "bn_l1", "slim"]

#: A BatchNorm scale below this (in magnitude) counts as small in the report.
SMALL_SCALE = 1e-2
NO_BATCHNORM = (
    "Slimming warm-up skipped: the model has no BatchNorm scales (--slimming-steps needs BatchNorm layers)."
)


def batchnorm_scales(model: nn.Module) -> list[nn.Parameter]:
    """The scales (``weight``) of every affine BatchNorm layer of ``model``."""
    return [m.weight for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]  # fmt: skip


def bn_l1(reg: float) -> Callable[[nn.Module], None]:
    """A ``regularize`` hook for :func:`~prunepilot.training.fine_tune`: adds ``reg * sign(scale)``
    to the gradient of every BatchNorm scale (the subgradient of ``reg * |scale|``)."""

    def regularize(model: nn.Module) -> None:
        for scale in batchnorm_scales(model):
            if scale.grad is not None:
                scale.grad.add_(reg * torch.sign(scale.detach()))

    return regularize


def slim(
    model: nn.Module, train: Any, steps: int, reg: float, settings: TrialSettings
) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``model`` trained ``steps`` steps with the BatchNorm penalty ``reg`` (the settings'
    batch size, learning rate, seed and loss), or ``model`` itself when it has no BatchNorm scale;
    and the record the report shows.
    """
    record: dict[str, Any] = {"steps": steps, "reg": reg, "bn_layers": len(batchnorm_scales(model))}
    if not record["bn_layers"]:
        return model, {**record, "note": NO_BATCHNORM}
    start = time.perf_counter()
    path = cache_dir() / "slimmed" / f"{_key(model, train, steps, reg, settings)}.pt"
    slimmed = eval_copy(model)
    if path.is_file():
        slimmed.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        record["cached"] = True
    else:
        fine_tune(slimmed, train, steps, settings.batch_size, settings.lr, settings.seed,
                  loss=settings.loss, regularize=bn_l1(reg))  # fmt: skip
        buffer = io.BytesIO()
        torch.save(slimmed.state_dict(), buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, buffer.getvalue())
        record["cached"] = False
    record["seconds"] = round(time.perf_counter() - start, 3)
    for when, which in (("before", model), ("after", slimmed)):
        scales = torch.cat([s.detach().abs().flatten().cpu() for s in batchnorm_scales(which)])
        record[f"mean_scale_{when}"] = round(float(scales.mean()), 4)
        record[f"small_scale_share_{when}"] = round(float((scales < SMALL_SCALE).float().mean()), 4)
    return slimmed.eval(), record


def _key(model: nn.Module, train: Any, steps: int, reg: float, settings: TrialSettings) -> str:
    digest = hashlib.sha256()
    tensors = [*model.state_dict().items(), *enumerate(first_batch(train, settings.batch_size))]
    for name, tensor in tensors:
        digest.update(str(name).encode())
        digest.update(tensor.detach().cpu().to(torch.float64).contiguous().numpy().tobytes())
    digest.update(
        repr((steps, reg, settings.batch_size, settings.lr, settings.seed, settings.loss.name)).encode()
    )
    return digest.hexdigest()[:16]
