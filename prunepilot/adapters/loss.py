"""The training loss: cross-entropy on the class scores, or a callable the user names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from prunepilot.adapters.batches import Batch, to_device
from prunepilot.adapters.outputs import user_model
from prunepilot.errors import UsageError
from prunepilot.imports import callable_name, resolve_callable


@dataclass(frozen=True)
class Loss:
    """What fine-tuning (and the taylor criterion's gradients) minimise.

    A user's loss is a callable ``(model, batch) -> loss tensor``: ``model`` is the user's own model
    (pruned), ``batch`` one batch exactly as the data gives it (a dict for a Hugging Face batch),
    on the training device. Example: ``lambda model, batch: model(**batch).loss``.

    Attributes:
        function: ``package.module:callable`` of the loss, or the callable itself (from Python);
            None for cross-entropy between the class scores and the labels.
    """

    function: str | Callable | None = None

    @property
    def name(self) -> str:
        """What records call it: the callable's import path, or ``cross_entropy``."""
        return callable_name(self.function) or "cross_entropy"

    def to_dict(self) -> dict:
        return {"name": self.name}

    def bind(self) -> Callable[[nn.Module, Batch, torch.device | str], torch.Tensor]:
        """A function ``(model, batch, device) -> loss`` (``model`` as prunepilot holds it).

        Raises:
            UsageError: when the import path cannot be imported or is not callable.
        """
        if self.function is None:
            return _cross_entropy
        try:
            function = resolve_callable(self.function, "--loss")
        except UsageError as exc:
            raise UsageError(str(exc), "loss") from None

        def user_loss(model: nn.Module, batch: Batch, device: torch.device | str) -> torch.Tensor:
            value = function(user_model(model), to_device(batch.raw, device))
            if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.requires_grad:
                shown = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise UsageError(
                    f"The loss {self.name!r} must return a scalar tensor that carries gradients. "
                    f"Got {shown} instead.",
                    "loss",
                )
            return value.reshape(())

        return user_loss


def _cross_entropy(model: nn.Module, batch: Batch, device: torch.device | str) -> torch.Tensor:
    inputs, labels = batch
    return nn.functional.cross_entropy(model(inputs.to(device)), labels.to(device))
