"""Checks of a task's data before anything is measured: finite inputs, labels within the model's
classes, a training split of at least one batch, and a validation split and metric that can tell
models apart. Each failure is one line naming the split, what is wrong and what is accepted.

A task whose outputs and labels only the user's loss and metric read (per-pixel scores and masks:
``Task.class_scores`` False) is checked for finite inputs and one training batch only.

Splits are read up to :data:`CHECKED_SAMPLES` samples each (the first ones), so a large data set is
checked in seconds; what lies beyond is caught as it is used (a trial whose loss stops being finite
fails with that reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from prunepilot.adapters import Split, batches
from prunepilot.errors import UsageError
from prunepilot.evaluators.metric import Metric
from prunepilot.settings.surface import named
from prunepilot.tasks.base import Task

__all__ = ["CHECKED_SAMPLES", "check_data"]

#: Samples read from each split.
CHECKED_SAMPLES = 10_000
#: Validation samples on which the metric must vary with the model's outputs.
METRIC_SAMPLES = 2048
_READ_BATCH = 256


@dataclass
class _Split:
    """What reading one split found."""

    samples: int = 0
    first_non_finite: int | None = None
    labels: set[int] = field(default_factory=set)


def check_data(task: Task, batch_size: int, metric: Metric) -> None:
    """Refuses data that no search can use (see the module's docstring).

    Args:
        task: The model and its splits.
        batch_size: The fine-tune batch size (the training split must hold one batch).
        metric: The metric that scores trials on the validation split.

    Raises:
        UsageError: one line naming the split and what is wrong.
    """
    outputs, labels = _val_outputs(task) if task.class_scores else (None, None)
    classes = outputs.shape[1] if outputs is not None else 0
    for name in ("train", "val", "test"):
        split = _read(getattr(task, name))
        if split.first_non_finite is not None:
            raise UsageError(
                f"The {name} split's inputs hold NaN or infinite values (first at sample "
                f"{split.first_non_finite}); inputs must be finite: clean or impute them.",
                "data",
            )
        outside = sorted(label for label in split.labels if not 0 <= label < classes) if classes else []
        if outside:
            raise UsageError(
                f"The {name} split holds labels {outside[:5]} but the model outputs {classes} classes; "
                f"labels must be in [0, {classes - 1}].",
                "data",
            )
        if name == "train" and not _is_loader(task.train) and split.samples < batch_size:
            raise UsageError(
                f"The train split has {split.samples} samples, fewer than one batch of {batch_size} "
                f"({named('batch_size')}); give more training data or a smaller {named('batch_size')}.",
                "batch_size",
            )
        if name == "val" and classes > 1 and split.samples > 1 and len(split.labels) == 1:
            raise UsageError(
                f"The val split holds one class only (label {next(iter(split.labels))} in all "
                f"{split.samples} samples read); it cannot show what pruning costs the other classes: "
                "split the data after shuffling it.",
                "data",
            )
    if outputs is not None:  # class scores and classes: a metric must tell right from wrong
        _check_metric_varies(outputs, labels, metric)


def _read(data: object) -> _Split:
    found = _Split()
    for inputs, labels in batches(data, _READ_BATCH):
        if found.first_non_finite is None and inputs.is_floating_point():
            bad = (~torch.isfinite(inputs)).flatten(1).any(1).nonzero()
            if len(bad):
                found.first_non_finite = found.samples + int(bad[0])
        if labels.dim() == 1 and not labels.is_floating_point():  # classes, one a sample
            found.labels.update(int(label) for label in torch.as_tensor(labels).unique())
        found.samples += len(inputs)
        if found.samples >= CHECKED_SAMPLES:
            break
    return found


def _val_outputs(task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's outputs and the labels of the validation split's first samples."""
    outputs, labels, seen = [], [], 0
    task.model.eval()
    with torch.inference_mode():
        for inputs, targets in batches(task.val, _READ_BATCH):
            if inputs.is_floating_point() and not torch.isfinite(inputs).all():
                break  # reported by the split's own check
            outputs.append(task.model(inputs).float())
            labels.append(torch.as_tensor(targets))
            seen += len(inputs)
            if seen >= METRIC_SAMPLES:
                break
    if not outputs:
        first, targets = next(iter(batches(task.val, 2)))
        with torch.inference_mode():
            return task.model(torch.nan_to_num(first)).float(), torch.as_tensor(targets)
    return torch.cat(outputs), torch.cat(labels)


def _check_metric_varies(outputs: torch.Tensor, labels: torch.Tensor, metric: Metric) -> None:
    """Refuses a metric that gives the same value for the model's outputs, for scores that pick
    every right class and for scores that pick a wrong one (it could not rank pruned models)."""
    function = metric.resolve() or _top1
    classes = outputs.shape[1]
    right = 10.0 * torch.nn.functional.one_hot(labels.long().clamp(0, classes - 1), classes).float()
    wrong = right.roll(1, dims=1)
    try:
        values = [float(function(scores, labels)) for scores in (outputs, right, wrong)]
    except Exception:  # noqa: BLE001 - a failing metric is reported by the metric's own check
        return
    if classes > 1 and all(math.isclose(v, values[0], rel_tol=1e-9, abs_tol=1e-12) for v in values):
        raise UsageError(
            f"The metric {metric.label!r} gives {values[0]:.4g} on the val split whatever the scores "
            "(the model's, all right, all wrong); it cannot rank pruned models: check the metric.",
            "metric",
        )


def _top1(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((outputs.argmax(1) == labels).float().mean())


def _is_loader(data: object) -> bool:
    source = data.source if isinstance(data, Split) else data
    return isinstance(source, DataLoader)
