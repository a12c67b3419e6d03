"""The TorchScript export, reloaded and checked before it is kept."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from prunepilot.adapters.several import Inputs, rows
from prunepilot.errors import PrunepilotError
from prunepilot.export._compare import FIXED_BATCH, TOLERANCE, max_difference
from prunepilot.rundir import write_atomically


def export_torchscript(model: nn.Module, inputs: Inputs, path: Path) -> float:
    """Saves ``model`` as TorchScript (traced), reloads the file and compares outputs.

    Args:
        model: The model to export (put in eval mode).
        inputs: A batch of real inputs used for tracing and for the check (a tuple for a model of
            several inputs).
        path: Where the ``.pt`` file goes (written atomically).

    Returns:
        The largest absolute difference between the model's and the reloaded file's outputs.

    Raises:
        PrunepilotError: when the reloaded file's outputs differ by more than ``TOLERANCE``
            (nothing is written then).
    """
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
        with torch.no_grad():
            traced = torch.jit.trace(model, rows(inputs, 2), check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        buffer.seek(0)
        reloaded = torch.jit.load(buffer, map_location="cpu")
    max_difference(model, reloaded, rows(inputs, 2))  # the traced batch runs
    try:
        difference = max_difference(model, reloaded, inputs)
    except RuntimeError as exc:
        raise PrunepilotError(f"The TorchScript export {FIXED_BATCH}.") from exc
    if not difference <= TOLERANCE:
        raise PrunepilotError(
            f"The TorchScript export does not reproduce the model (max difference {difference:.3g} "
            f"> {TOLERANCE:g}); nothing was written to {path}."
        )
    write_atomically(path, buffer.getvalue())
    return difference


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """Loads an exported TorchScript model on the CPU."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu")
