"""Knowledge distillation: fine-tuning a pruned model toward the unpruned model's class scores.

The fine-tune's loss (cross-entropy, or the user's) gains ``weight * T^2 * KL(teacher || student)``
of the class scores softened by the temperature ``T`` (Hinton et al., 2015), summed over classes and
averaged over samples (and positions, for scores of shape ``(batch, length, classes)``). The teacher
sees exactly the inputs the student saw: its forward pass hooks the student's, so that any loss,
the user's ``(model, batch) -> loss`` included, is distilled with one teacher pass per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional

from prunepilot.adapters import Batch
from prunepilot.adapters.outputs import LogitsModel, logits_of, user_model
from prunepilot.errors import invalid_parameter
from prunepilot.inputs import eval_copy

__all__ = ["Distillation", "Teacher", "distilled", "kd_term"]

LossFunction = Callable[[nn.Module, Batch, "torch.device | str"], torch.Tensor]


@dataclass(frozen=True)
class Distillation:
    """How strongly a fine-tune follows the teacher.

    Attributes:
        temperature: Softens both models' class scores before they are compared (> 0).
        weight: The distillation term's weight beside the task loss (> 0).
    """

    temperature: float = 4.0
    weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("temperature", "weight"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value > 0)
            ):
                raise invalid_parameter(name, "Distillation", "a finite number > 0", value)


class Teacher(NamedTuple):
    """A fine-tune's teacher: the model to follow and how strongly (see :func:`distilled`)."""

    model: nn.Module
    distillation: Distillation


def kd_term(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` over the classes, averaged over every
    other position; the teacher's scores carry no gradient. The classes are the last dimension
    (``(batch, classes)``, a sequence's ``(batch, positions, classes)``), or the second of an image's
    per-pixel scores ``(batch, classes, height, width)``."""
    scale, classes = float(temperature), 1 if student.dim() >= 4 else -1
    log_student = functional.log_softmax(student / scale, dim=classes)
    log_teacher = functional.log_softmax(teacher.detach().to(student.dtype) / scale, dim=classes)
    divergence = functional.kl_div(log_student, log_teacher, reduction="none", log_target=True)
    return divergence.sum(classes).mean() * scale * scale


def distilled(loss_of: LossFunction, teacher: Teacher, device: torch.device | str = "cpu") -> LossFunction:
    """``loss_of`` plus the distillation term toward ``teacher.model`` (a copy of it on ``device``, in
    eval mode, never trained; the model itself is not changed).

    The student's first forward pass in each call of the returned function is recorded (its inputs
    and its class scores); the teacher then runs on the same inputs, without gradients.
    """
    teacher_module = user_model(eval_copy(teacher.model).to(device))
    distillation = teacher.distillation

    def loss(model: nn.Module, batch: Batch, device: torch.device | str) -> torch.Tensor:
        seen: list[tuple[tuple, dict, object]] = []

        def record(_module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
            if not seen:
                seen.append((args, kwargs, output))

        student_module = user_model(model)
        handle = student_module.register_forward_hook(record, with_kwargs=True)
        try:
            value = loss_of(model, batch, device)
        finally:
            handle.remove()
        if not seen:  # a loss that never called the model: nothing to distil
            return value
        args, kwargs, output = seen[0]
        key = model.output_key if isinstance(model, LogitsModel) else None
        with torch.no_grad():
            target = logits_of(teacher_module(*args, **kwargs), key)
        student = logits_of(output, key)
        return value + distillation.weight * kd_term(student, target, distillation.temperature)

    return loss
