"""PyTorch eager: the model runs as it is."""

from __future__ import annotations

import torch
from torch import nn

from prunepilot.runtimes.base import Deployed, Runtime


class TorchRuntime(Runtime):
    """The model itself, timed and scored in PyTorch (its size: the saved state dict)."""

    name = "torch"

    def deploy(
        self,
        model: nn.Module,
        example: torch.Tensor,
        threads: int,
        int8: bool = False,
        calibration: torch.Tensor | None = None,
    ) -> Deployed:
        if int8:
            raise ValueError("The torch runtime runs fp32 only; int8 needs the onnxruntime runtime.")
        return Deployed(model)
