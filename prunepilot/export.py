"""Exports that are reloaded and checked before anyone ships them."""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunepilot.errors import PrunepilotError, UsageError
from prunepilot.evaluators.inputs import DEFAULT_DTYPE, InputShape, dtype_of
from prunepilot.policies import apply_plan
from prunepilot.rundir import TEMPORARY_PREFIX, write_atomically

PLAN_SCHEMA = "prunepilot.plan/1"
PLAN_FILE = "plan.json"
PLAN_WEIGHTS = "weights.pt"

#: Largest absolute output difference accepted between the model and its reloaded export.
TOLERANCE = 1e-5


def export_torchscript(model: nn.Module, inputs: torch.Tensor, path: Path) -> float:
    """Saves ``model`` as TorchScript (traced), reloads the file and compares outputs.

    Args:
        model: The model to export (put in eval mode).
        inputs: A batch of real inputs used for tracing and for the check.
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
            traced = torch.jit.trace(model, inputs[:2], check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        buffer.seek(0)
        reloaded = torch.jit.load(buffer, map_location="cpu")
    with torch.no_grad():
        expected = model(inputs)
        actual = reloaded(inputs)
    difference = float((expected - actual).abs().max())
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


def _max_difference(model: nn.Module, other: nn.Module, inputs: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.eval()(inputs) - other.eval()(inputs)).abs().max())


def export_plan(
    model: nn.Module,
    removed: dict[str, list[int]],
    source: dict[str, str],
    input_shape: tuple[int, ...],
    inputs: torch.Tensor,
    folder: Path,
    skipped: Sequence[str] = (),
) -> float:
    """Writes the pruned model as a plan: ``plan.json`` (where the base class comes from, the
    blocks removed whole and the channels removed from each group) and ``weights.pt`` (a plain
    state dict). Both are reloaded with :func:`load_plan` and the outputs compared before they are
    kept.

    Args:
        model: The pruned, fine-tuned model.
        removed: Group name -> removed channel indices (recorded by ``apply_policy``).
        source: ``{"task": name}`` for a built-in task or ``{"factory": "pkg.module:factory"}``.
        input_shape: One sample's shape.
        inputs: Real inputs for the check.
        folder: The run directory.
        skipped: The blocks removed whole (the policy's ``skip``).

    Returns:
        The largest absolute output difference of the reloaded plan.
    """
    plan = {
        "schema": PLAN_SCHEMA, **source, "input_shape": list(input_shape),
        "input_dtype": dtype_of(input_shape), "skipped": list(skipped), "removed": removed,
    }  # fmt: skip
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    temporary = folder / f"{TEMPORARY_PREFIX}{PLAN_WEIGHTS}.check"
    write_atomically(temporary, buffer.getvalue())
    try:
        reloaded = build_from_plan(plan, temporary)
        difference = _max_difference(model, reloaded, inputs)
    finally:
        temporary.unlink(missing_ok=True)
    if not difference <= TOLERANCE:
        raise PrunepilotError(
            f"The plan export does not reproduce the model (max difference {difference:.3g} > {TOLERANCE:g})."
        )
    write_atomically(folder / PLAN_WEIGHTS, buffer.getvalue())
    write_atomically(folder / PLAN_FILE, json.dumps(plan, indent=1) + "\n")
    return difference


def load_plan(folder: Path) -> nn.Module:
    """Re-creates an exported model from ``folder/plan.json`` and ``folder/weights.pt``: the base
    class is built by its factory (or the built-in task), the plan's blocks and channels are removed,
    and the weights are loaded with ``weights_only=True`` (no pickled modules)."""
    try:
        plan = json.loads((Path(folder) / PLAN_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"Cannot read the plan {Path(folder) / PLAN_FILE}: {exc}.") from None
    return build_from_plan(plan, Path(folder) / PLAN_WEIGHTS)


def build_from_plan(plan: dict[str, Any], weights: Path) -> nn.Module:
    """The model of ``plan`` with the state dict in ``weights`` (see :func:`load_plan`)."""
    from prunepilot.tasks.loading import build_base_model

    if plan.get("schema") != PLAN_SCHEMA:
        raise UsageError(f"Unsupported plan schema {plan.get('schema')!r}; accepted: {PLAN_SCHEMA!r}.")
    base = build_base_model(plan)
    shape = InputShape(plan["input_shape"], plan.get("input_dtype", DEFAULT_DTYPE))
    model = apply_plan(base, plan["removed"], shape, plan.get("skipped", []))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()
