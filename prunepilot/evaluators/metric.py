"""The quality metric a search optimises: top-1 accuracy, or a callable the user names."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from prunepilot.adapters import Split, batches
from prunepilot.adapters.structured import OutputLayout
from prunepilot.errors import UsageError, invalid_parameter
from prunepilot.evaluators.accuracy import top1_accuracy
from prunepilot.gate import NullGate
from prunepilot.imports import callable_name, resolve_callable

DIRECTIONS = ("maximize", "minimize")
DEFAULT_METRIC_NAME = "top1_accuracy"


@dataclass(frozen=True)
class Metric:
    """How a model's quality is scored on one split.

    A user's metric is a callable ``(outputs, labels) -> float`` over a whole split: ``outputs``
    are the model's outputs for every sample, concatenated on the CPU, and ``labels`` the split's
    labels, in the same order (scikit-learn's ``metric(y_true, y_pred)`` turned around, so that
    ``lambda out, y: f1_score(y, out.argmax(1), average="macro")`` fits).

    Attributes:
        function: ``package.module:callable`` of the metric, or the callable itself (from Python);
            None for top-1 accuracy.
        direction: ``maximize`` (accuracy, F1) or ``minimize`` (a loss, an error rate).
        outputs: How the model's structured output is packed (set from the task, not by the user):
            the function gets the structure back (see :mod:`prunepilot.adapters.structured`).
    """

    function: str | Callable | None = None
    direction: str = "maximize"
    outputs: OutputLayout | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise invalid_parameter("metric_direction", "Metric", f"one of {DIRECTIONS}", self.direction)

    @property
    def name(self) -> str:
        """A short name for reports: the callable's import path, or ``top1_accuracy``."""
        return callable_name(self.function) or DEFAULT_METRIC_NAME

    @property
    def label(self) -> str:
        """What reports and logs call it: ``accuracy`` for top-1 accuracy, else :attr:`name`."""
        return "accuracy" if self.function is None else self.name

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def resolve(self) -> Callable[[torch.Tensor, torch.Tensor], float] | None:
        """The user's callable (None for top-1 accuracy).

        Raises:
            UsageError: when the import path cannot be imported or is not callable.
        """
        if self.function is None:
            return None
        try:
            return resolve_callable(self.function, "--metric")
        except UsageError as exc:
            raise UsageError(str(exc), "metric") from None

    def to_dict(self) -> dict:
        return {"name": self.name, "function": callable_name(self.function), "direction": self.direction}


def evaluate_metric(
    model: nn.Module,
    dataset: Dataset | DataLoader | Split,
    metric: Metric | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    gate: NullGate | None = None,
) -> float:
    """``metric`` (top-1 accuracy when None) of ``model`` on ``dataset``.

    Raises:
        ValueError: when the metric does not return a finite number.
    """
    function = (metric or Metric()).resolve()
    if function is None:
        return top1_accuracy(model, dataset, batch_size, device, gate)
    gate = gate or NullGate()
    model.eval()
    outputs, labels = [], []
    with torch.inference_mode():
        for inputs, targets in batches(dataset, batch_size):
            with gate.compute():
                outputs.append(model(inputs.to(device)).float().cpu())
            labels.append(torch.as_tensor(targets))
    if not outputs:
        raise ValueError("Cannot score a model on an empty dataset.")
    joined = torch.cat(outputs)
    value = function(joined if metric.outputs is None else metric.outputs.unpack(joined), torch.cat(labels))
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"The metric {metric.name!r} must return a finite number. Got {value!r} instead.")
    return value
