"""The search's gate: the smallest model of the space made, run and measured against the budget
(before any run directory exists, and by ``--dry-run``), and what ``--dry-run`` prints."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prunepilot.budget import BudgetLimit, format_cost
from prunepilot.errors import UsageError, first_line
from prunepilot.evaluators import evaluate_model
from prunepilot.inputs import on_device
from prunepilot.pipeline.prepare import PreparedJob
from prunepilot.policies import apply_policy
from prunepilot.settings import named
from prunepilot.trial import deploy

__all__ = ["check_reachable", "dry_run_lines"]


def check_reachable(prepared: PreparedJob, baseline: dict[str, Any], budget: BudgetLimit | None) -> str:
    """Makes the smallest model of the space (every group at the largest ratio, every removable
    block removed) and runs it as trials will; refuses a budget it misses (latency: timed alongside
    the base model, as trials are). Without a budget (a dry run may have none), the model is made and
    deployed only.

    Returns:
        What was checked, for the dry run's report.

    Raises:
        UsageError: naming what breaks the smallest model, or the budget, the smallest model's cost
            and what to loosen.
    """
    task, space, device, settings = prepared.task, prepared.space, prepared.spec.device, prepared.settings
    int8 = space.quantize != "none"
    smallest_policy = replace(
        space.uniform(space.max_ratio, "l1", int8=int8), removed_blocks=space.blocks,
        sparsity=space.max_sparsity, input_features=space.kept_features(space.max_input_ratio),
    )
    try:
        smallest = apply_policy(task.model, smallest_policy, task.input_shape).model.to(device)
        shipped = deploy(smallest, task.train, task.input_shape, settings, int8)
        if budget is None:
            return "the smallest model of the space is made and runs (no budget to check)"
        base = deploy(on_device(task.model, device), task.train, task.input_shape, settings)
        reference = (base.module, baseline["latency_ms"])
        measured = evaluate_model(
            smallest, task.val, task.input_shape, settings.latency, device=device,
            reference=reference, metric=settings.metric, deployed=shipped,
        )  # fmt: skip
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - layers Torch-Pruning does not handle, pruned together
        raise UsageError(
            f"Pruning every group by {space.max_ratio:g} breaks the model ({type(exc).__name__}: "
            f"{first_line(exc, 160)}); lower {named('ratio_max')} or {named('exclude')} the group "
            "that breaks it.",
            "ratio_max",
        ) from exc
    value = measured.cost(budget.cost)
    if not budget.fits(value):
        raise UsageError(
            f"The budget {budget.text!r} ({format_cost(budget.cost, budget.limit)}) cannot be met: the "
            f"smallest model in the search space (every group pruned by {space.max_ratio:g}"
            f"{', every removable block removed' if space.blocks else ''}{', int8' if int8 else ''}) "
            f"measures {format_cost(budget.cost, value)}; loosen the budget or raise {named('ratio_max')} "
            "(at most 0.95)."
        )
    limit = format_cost(budget.cost, budget.limit)
    return (f"the budget {budget.text!r} ({limit}) is reachable: the smallest model of the space measures "
            f"{format_cost(budget.cost, value)}")  # fmt: skip


def dry_run_lines(prepared: PreparedJob, baseline: dict[str, Any]) -> list[str]:
    """What ``--dry-run`` prints: the task, baseline, budget, groups and search space."""
    task, latency, budget = prepared.task, prepared.settings.latency, prepared.job.budget
    lines = [
        f"Task: {task.name}, input shape {task.input_shape}",
        f"Baseline (validation): {prepared.settings.metric.label} {baseline['accuracy']:.4f}, "
        f"{format_cost('flops', baseline['flops'])}, {baseline['params']:,} params, "
        f"{format_cost('size_bytes', baseline['size_bytes'])}, latency "
        f"{baseline['latency_ms']:.3f} ms (batch {latency.batch_size}, {latency.threads} thread(s), "
        f"{prepared.settings.runtime})",
    ]
    if prepared.int8_note:
        lines.append(f"int8: {prepared.int8_note}; the search runs fp32 only")
    if budget is not None:
        limit = budget.resolve(baseline[budget.cost])
        lines.append(f"Budget: {budget.text} -> {format_cost(budget.cost, limit.limit)}")
    width = max([32, *(len(g.name) for g in prepared.groups)])  # Hugging Face names run long
    lines.append(f"{'group':{width}} {'channels':>8} {'FLOPs':>7}  layers")
    for g in prepared.groups:
        size = f"{g.heads} heads" if g.heads else g.channels
        lines.append(f"{g.name:{width}} {size:>8} {100 * g.flops_share:>6.1f}%  {', '.join(g.modules)}")
    if prepared.left_whole:
        lines.append("Left whole (never pruned):")
        lines += [f"  {name}: {reason}" for name, reason in prepared.left_whole.items()]
    lines.append("Search space:")
    lines += [f"  {line}" for line in prepared.space.describe()]
    return lines
