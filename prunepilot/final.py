"""Final candidates, made for real: re-applied on a fresh copy, fine-tuned longer, re-measured side
by side with the baseline, judged against the budget; the chosen one alone is scored on test."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from optuna.trial import FrozenTrial
from torch import nn

from prunepilot.budget import BudgetLimit
from prunepilot.evaluators import (
    LatencySettings,
    count_flops,
    count_params,
    time_models,
)
from prunepilot.evaluators.metric import evaluate_metric
from prunepilot.families.gradual import prune_gradually, schedule_record
from prunepilot.families.sparsity import output_layer_names, sparse_targets, sparsity_record
from prunepilot.inputs import example_batch, on_device
from prunepilot.policies import Plan, Policy
from prunepilot.policies.heads import head_counts
from prunepilot.runtimes import Deployed
from prunepilot.tasks.base import Task
from prunepilot.trial import TrialSettings, deploy, prune_and_train

__all__ = ["FINAL_CANDIDATES", "Finalized", "finalize", "finalize_candidates", "score_on_test"]

#: The final model and the baseline get this many times the trials' timed passes.
FINAL_REPEATS_FACTOR = 5
#: The best front points by trial score, each given the final fine-tune (see finalize_candidates;
#: cheaper ones follow only when none of these meets the budget on re-measurement).
FINAL_CANDIDATES = 3


@dataclass
class Finalized:
    """A front point made for real (see :func:`finalize`).

    Attributes:
        trial: The trial whose policy it is.
        final: Its measurements, with ``budget_limit`` and ``budget_met``.
        model: The fine-tuned pruned model.
        policy: The policy.
        plan: What the policy removed (see ``apply_policy``).
        deployed: The model as it runs in the job's runtime (what was timed and scored).
    """

    trial: FrozenTrial | None
    final: dict[str, Any]
    model: nn.Module
    policy: Policy
    plan: Plan
    deployed: Deployed | None = None


def finalize_candidates(
    ranked: list[FrozenTrial],
    task: Task,
    settings: TrialSettings,
    budget: BudgetLimit,
    log: Callable[[str], None],
    device: str = "cpu",
    maximize: bool = True,
) -> Finalized | None:
    """Finalizes the first :data:`FINAL_CANDIDATES` of ``ranked`` (``settings.finetune_steps`` is
    the final length) and returns the one with the best validation metric after the final
    fine-tune among those that meet the budget on re-measurement (ties: the earlier one).

    The trial score ranks policies only roughly (``benchmarks/proxy_fidelity.py``), so the few best
    are promoted to the full fine-tune and compared there, on the validation split; only the one
    returned is scored on the test split. When none of them meets the budget on re-measurement,
    the rest of ``ranked`` is finalized in turn until one does (down the feasible front, each
    next point scores lower and costs less): a model within budget is worth some accuracy. When
    none ever does, the last one finalized is returned. ``final["candidates"]`` records each
    finalized one's validation metric and cost.

    Args:
        ranked: Trials of the feasible front, best trial score first (None is returned when empty).
    """
    finished: list[Finalized] = []
    for candidate in ranked:
        if len(finished) >= FINAL_CANDIDATES and any(done.final["budget_met"] for done in finished):
            break
        if len(finished) == FINAL_CANDIDATES:
            log(f"None of the {FINAL_CANDIDATES} best front points meets the budget on re-measurement; "
                "trying the cheaper ones in turn.")  # fmt: skip
        policy = Policy.from_dict(candidate.user_attrs["policy"])
        log(f"Final fine-tune of trial {candidate.number} ({settings.finetune_steps} steps) ...")
        done = finalize(task, policy, settings, device, candidate)
        # A relative latency budget follows the baseline re-measured side by side with the model.
        judge = budget.limit_for(done.final["baseline_latency_ms"])
        done.final["budget_limit"] = judge.limit
        done.final["budget_met"] = judge.fits(done.final[budget.cost])
        finished.append(done)
        if not done.final["budget_met"]:
            log(f"Trial {candidate.number} misses the budget on re-measurement.")
    if not finished:
        return None
    fitting = [done for done in finished if done.final["budget_met"]]
    sign = 1.0 if maximize else -1.0
    chosen = max(fitting, key=lambda done: sign * done.final["val_accuracy"]) if fitting else finished[-1]
    chosen.final["candidates"] = [
        {"number": done.trial.number, "val_accuracy": done.final["val_accuracy"],
         budget.cost: done.final[budget.cost], "budget_met": done.final["budget_met"]}
        for done in finished
    ]  # fmt: skip
    chosen.final.update(score_on_test(task, chosen.model, settings, device, chosen.deployed))
    return chosen


def compare_latency(
    baseline: nn.Module,
    candidate: nn.Module,
    input_shape: tuple[int, ...],
    settings: LatencySettings,
    device: str = "cpu",
) -> tuple[float, float]:
    """Medians of the two models (both on ``device``) timed there in alternating rounds, so drift hits
    both alike."""
    longer = replace(settings, repeats=FINAL_REPEATS_FACTOR * settings.repeats)
    base, cand = time_models([baseline, candidate], input_shape, longer, device)
    return base, cand


def finalize(
    task: Task,
    policy: Policy,
    settings: TrialSettings,
    device: str = "cpu",
    trial: FrozenTrial | None = None,
) -> Finalized:
    """Re-applies ``policy`` to a fresh copy of the task's model and measures the result on the
    validation split (the test split is :func:`score_on_test`'s, for the chosen model alone).

    Args:
        task: The task (model and splits).
        policy: The chosen policy.
        settings: Trial settings whose ``finetune_steps`` is the final fine-tune length.
        device: The target device: the model is fine-tuned, scored and timed there.
        trial: The trial whose policy it is, when it is one.

    Returns:
        The final model (on the CPU, for export), its plan, what runs in the job's runtime and its
        measurements there (int8 when the policy says so).
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    prune = prune_gradually if settings.schedule == "gradual" else prune_and_train
    model, plan = prune(task.model, task.train, task.input_shape, policy, settings, timings, device)
    base = deploy(on_device(task.model, device), task.train, task.input_shape, settings)
    shipped = deploy(model, task.train, task.input_shape, settings, policy.int8)
    base_latency, latency = compare_latency(
        base.module, shipped.module, task.input_shape, settings.latency, device
    )
    val_accuracy = evaluate_metric(shipped.module, task.val, settings.metric, device=device)
    model = model.cpu()
    sample = example_batch(task.input_shape)
    final = {
        "val_accuracy": val_accuracy,
        "latency_ms": latency,
        "baseline_latency_ms": base_latency,
        "flops": count_flops(model, sample),
        "params": count_params(model),
        "size_bytes": shipped.size_bytes,
        "runtime": settings.runtime,
        "int8": shipped.quantized,
        "finetune_steps": settings.finetune_steps,
        "schedule": schedule_record(settings),
        "distill": None if settings.distill is None else asdict(settings.distill),
        "timings": timings,
    }
    if shipped.fallback:
        final["int8_fallback"] = shipped.fallback
    if policy.sparsity:  # the zeros in the stored weights (output layers stay dense)
        targets = sparse_targets(model, output_layer_names(model, task.input_shape))
        final["sparsity"] = {"amount": policy.sparsity, **sparsity_record(model, targets)}
    if policy.input_features is not None:
        final["input_features"] = {"kept": len(policy.input_features), "of": int(task.input_shape[0]),
                                   "indices": list(policy.input_features)}  # fmt: skip
    heads = head_counts(model)
    if heads:  # attention heads kept per layer, of the baseline's
        baseline = head_counts(task.model)  # a layer of a removed block is absent from heads
        final["heads"] = {name: {"kept": kept, "baseline": baseline[name]} for name, kept in heads.items()}
    final["wall_s"] = time.perf_counter() - start
    # PyTorch's deployed model is the model itself, moved to the CPU above: test scoring moves it back.
    return Finalized(trial, final, model, policy, plan, None if settings.runtime == "torch" else shipped)


def score_on_test(
    task: Task,
    model: nn.Module,
    settings: TrialSettings,
    device: str = "cpu",
    deployed: Deployed | None = None,
) -> dict[str, float]:
    """The job's metric on the test split for ``model`` and the baseline, as they run in the job's
    runtime (``deployed``: ``model`` there, made when None); for an int8 model, its fp32 form's as
    well (``fp32_test_accuracy``). The test split is used here, and only here: for the chosen model
    (it decides nothing)."""
    model = on_device(model, device)
    if deployed is None:
        deployed = deploy(model, task.train, task.input_shape, settings)
    base = deploy(on_device(task.baseline_model, device), task.train, task.input_shape, settings)
    scores = {
        "test_accuracy": evaluate_metric(deployed.module, task.test, settings.metric, device=device),
        "baseline_test_accuracy": evaluate_metric(base.module, task.test, settings.metric, device=device),
    }
    if deployed.quantized:
        fp32 = deploy(model, task.train, task.input_shape, settings)
        scores["fp32_test_accuracy"] = evaluate_metric(fp32.module, task.test, settings.metric, device=device)
    return scores
