"""The plan export: ``plan.json`` (where the base class comes from and what was removed) and
``weights.pt`` (a plain state dict), re-created from the original class and checked."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunepilot.adapters.several import ModelInputs
from prunepilot.errors import PrunepilotError, UsageError
from prunepilot.export._compare import TOLERANCE, max_difference
from prunepilot.families.features import KeptFeatures
from prunepilot.inputs import DEFAULT_DTYPE, InputShape, dtype_of
from prunepilot.policies import Plan, apply_plan
from prunepilot.rundir import TEMPORARY_PREFIX, write_atomically
from prunepilot.trust import check_trusted, named_code

PLAN_SCHEMA = "prunepilot.plan/1"
PLAN_FILE = "plan.json"
PLAN_WEIGHTS = "weights.pt"


def export_plan(
    model: nn.Module,
    plan: Plan,
    source: dict[str, str],
    input_shape: tuple[int, ...],
    inputs: torch.Tensor,
    folder: Path,
    base: nn.Module | None = None,
) -> float:
    """Writes the pruned model as a plan: ``plan.json`` (where the base class comes from, the
    blocks removed whole and the channels removed from each group) and ``weights.pt`` (a plain
    state dict). Both are reloaded with :func:`load_plan` and the outputs compared before they are
    kept.

    Args:
        model: The pruned, fine-tuned model.
        plan: What was removed (recorded by ``apply_policy``).
        source: ``{"task": name}`` for a built-in task, ``{"factory": "pkg.module:factory"}``, or
            ``{"python": "module.Class"}`` for a model given in Python (see ``base``).
        input_shape: One sample's shape.
        inputs: Real inputs for the check.
        folder: The run directory.
        base: The base model, for a model given in Python (``source`` ``{"python": ...}``): its
            architecture is re-created by copying it.

    Returns:
        The largest absolute output difference of the reloaded plan.
    """
    record = {
        "schema": PLAN_SCHEMA, **source, "input_shape": list(input_shape),
        "input_dtype": dtype_of(input_shape), **plan.to_dict(),
    }  # fmt: skip
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    temporary = folder / f"{TEMPORARY_PREFIX}{PLAN_WEIGHTS}.check"
    write_atomically(temporary, buffer.getvalue())
    try:
        reloaded = build_from_plan(record, temporary, base)
        difference = max_difference(model, reloaded, inputs)
    finally:
        temporary.unlink(missing_ok=True)
    if not difference <= TOLERANCE:
        raise PrunepilotError(
            f"The plan export does not reproduce the model (max difference {difference:.3g} > {TOLERANCE:g})."
        )
    write_atomically(folder / PLAN_WEIGHTS, buffer.getvalue())
    write_atomically(folder / PLAN_FILE, json.dumps(record, indent=1) + "\n")
    return difference


def load_plan(folder: Path, base_model: nn.Module | None = None, trust: bool = False) -> nn.Module:
    """Re-creates an exported model from ``folder/plan.json`` and ``folder/weights.pt``: the base
    class is built by its factory (or the built-in task), the plan's blocks and channels are removed,
    and the weights are loaded with ``weights_only=True`` (no pickled modules).

    Args:
        folder: The folder holding the plan (a run, or a trial's export in ``RUN/exports/trial-N``).
        base_model: An instance of the base class (its weights do not matter): needed for a model
            searched from Python; otherwise the plan's factory is imported, which only a run made on
            this machine, or ``trust``, allows (see :mod:`prunepilot.trust`).
        trust: Import the factory a plan made elsewhere names.

    Raises:
        UsageError: when the plan cannot be read, or names a factory it may not import.
    """
    try:
        plan = json.loads((Path(folder) / PLAN_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"Cannot read the plan {Path(folder) / PLAN_FILE}: {exc}.") from None
    if base_model is None and isinstance(plan, dict):
        run = Path(folder) if (Path(folder) / "config.json").is_file() else Path(folder).parent.parent
        check_trusted(run, named_code(plan), trust, flag="base_model=... or trust=True")
    return build_from_plan(plan, Path(folder) / PLAN_WEIGHTS, base_model)


def build_from_plan(plan: dict[str, Any], weights: Path, base_model: nn.Module | None = None) -> nn.Module:
    """The model of ``plan`` with the state dict in ``weights`` (see :func:`load_plan`); a plan with
    ``input_features`` gives a model that takes those features only, in that order."""
    from prunepilot.tasks.loading import build_base_model

    if plan.get("schema") != PLAN_SCHEMA:
        raise UsageError(f"Unsupported plan schema {plan.get('schema')!r}; accepted: {PLAN_SCHEMA!r}.")
    base = build_base_model(plan, base_model)
    several = ModelInputs.from_dict(plan["inputs"]) if plan.get("inputs") else None
    shape = InputShape(plan["input_shape"], plan.get("input_dtype", DEFAULT_DTYPE), several)
    model = apply_plan(base, Plan.from_dict(plan), shape)
    if isinstance(model, KeptFeatures):  # the exported model takes the kept features only
        model = model.inner
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.train()  # then eval(): layers that cache values derived from their weights when put in
    model.eval()  # eval mode (LeViT's attention biases) derive them from the loaded weights
    return model
