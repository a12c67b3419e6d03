"""The settings of the model, its data, its metric and its loss (the job file's ``[model]``,
``[data]`` and ``[metric]`` sections and ``finetune.loss``), each declared once (see
:mod:`prunepilot.settings.declare`).

:class:`TaskFields` is a base of :class:`~prunepilot.spec.JobSpec`: each setting is a job field
like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prunepilot.adapters import BatchFormat, Loss
from prunepilot.evaluators.metric import DIRECTIONS, Metric
from prunepilot.imports import is_import_path
from prunepilot.inputs import INPUT_DTYPES
from prunepilot.settings import Check, Integer, Items, OneOf, setting
from prunepilot.tasks.builtin import BUILTIN_TASKS, DEFAULT_TASK
from prunepilot.tasks.loading import parse_input_shape

__all__ = ["TaskFields"]

_TEXT = Check(lambda v: isinstance(v, str) and bool(v), "None or a non-empty string", {"minLength": 1})
_CALLABLE = Check(
    lambda v: callable(v) or (isinstance(v, str) and is_import_path(v)),
    "None or an import path 'package.module:callable'",
    {"pattern": "^[^:]+:[^:]+$"},
)


@dataclass(frozen=True)
class TaskFields:
    """What is searched and how it is read and scored (what each does: its ``help`` below, or
    ``docs/reference.md``); ``prunepilot.search`` takes the model and data as objects instead."""

    task: str = setting(
        DEFAULT_TASK, "built-in task when no --model is given: "
        + "; ".join(f"{t.name}: {t.description}" for t in BUILTIN_TASKS.values()),
        key="model.task", check=OneOf(sorted(BUILTIN_TASKS)), api=False,
    )  # fmt: skip
    model: str | None = setting(
        None, "pkg.module:factory returning a torch.nn.Module", key="model.factory", default_text="none",
        example="mypkg.nets:resnet20", api=False,
    )  # fmt: skip
    weights: str | None = setting(
        None, "checkpoint (a state dict), loaded with weights_only=True", key="model.checkpoint",
        default_text="none", example="resnet20.pt", api=False,
    )  # fmt: skip
    input_shape: tuple[int, ...] | None = setting(
        None, "one sample's shape without the batch dimension, e.g. 3,32,32 (checked against the data)",
        key="model.input_shape", check=Items(Integer(1), "a list of integers >= 1"),
        default_text="the data's",
        example=[3, 32, 32], api=False, parse=parse_input_shape,
    )  # fmt: skip
    input_dtype: str | None = setting(
        None, "one sample's dtype (float32, int64 for token ids ...); the synthetic inputs that trace, time "
        "and count the model have it", key="model.input_dtype", check=OneOf(list(INPUT_DTYPES), listed=False),
        default_text="the data's", example="float32", api=False,
    )  # fmt: skip
    output_key: str | None = setting(
        None, "the key or attribute of the class scores in the model's output", key="model.output_key",
        check=_TEXT, default_text="a tensor, logits of a dict or ModelOutput, a tuple's first",
        example="logits",
    )  # fmt: skip
    data: str | None = setting(
        None, "pkg.module:factory returning (train, val, test) Datasets or loaders", key="data.factory",
        default_text="none", example="mypkg.data:splits", api=False,
    )  # fmt: skip
    input_key: str | None = setting(
        None, "the key of the model's input in dict batches", key="data.input_key", check=_TEXT,
        default_text="input_ids, pixel_values, input ... whichever the batch has", example="input_ids",
    )  # fmt: skip
    input_keys: list[str] | None = setting(
        None, "the model's inputs in dict batches, e.g. input_ids,attention_mask (a job file: a list)",
        key="data.input_keys", check=Items(None, "a non-empty list of keys"),
        default_text="every key of the batch that the model's forward names, but the labels'",
        example=["input_ids", "attention_mask"],
    )  # fmt: skip
    label_key: str | None = setting(
        None, "the labels' key in dict batches", key="data.label_key", check=_TEXT,
        default_text="labels, label ... whichever the batch has", example="labels",
    )  # fmt: skip
    metric: str | Callable | None = setting(
        None, "pkg.module:callable scoring (outputs, labels) -> float over a split; from Python, any "
        "callable",
        key="metric.function", default_text="top-1 accuracy", example="mypkg.metrics:macro_f1",
    )  # fmt: skip
    metric_direction: str = setting(
        "maximize", "the metric's direction (minimize a loss or an error rate)", key="metric.direction",
        check=OneOf(DIRECTIONS),
    )  # fmt: skip
    loss: str | Callable | None = setting(
        None, "pkg.module:callable (model, batch) -> loss tensor that fine-tunes minimise; from Python, any "
        "callable", key="finetune.loss", check=_CALLABLE,
        default_text="cross-entropy of the class scores and the labels", example="mypkg.losses:focal",
        note="it is given your own model (pruned) and a batch as the data gives it",
    )  # fmt: skip

    def reading(self) -> dict[str, object]:
        """How the model's data, outputs and loss are read (``checked_task``'s keyword arguments)."""
        return {
            "batch_format": BatchFormat(self.input_key, self.label_key),
            "output_key": self.output_key,
            "loss": Loss(self.loss),
            "input_keys": self.input_keys,
            "metric": Metric(self.metric, self.metric_direction),
        }
