"""The chosen policy, made for real: re-applied, fine-tuned longer, tested once, re-measured."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from torch import nn

from prunepilot.evaluators import (
    LatencySettings,
    count_flops,
    count_params,
    serialized_size,
    time_models,
)
from prunepilot.evaluators.inputs import example_batch, on_device
from prunepilot.evaluators.score import evaluate_metric
from prunepilot.policies import Policy
from prunepilot.tasks.base import Task
from prunepilot.trial import TrialSettings, prune_and_train

#: The final model and the baseline get this many times the trials' timed passes.
FINAL_REPEATS_FACTOR = 5


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
    removed: dict[str, list[int]] | None = None,
    device: str = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Re-applies ``policy`` to a fresh copy of the task's model and measures the result on the
    validation split (the test split is :func:`score_on_test`'s, for the chosen model alone).

    Args:
        task: The task (model and splits).
        policy: The chosen policy.
        settings: Trial settings whose ``finetune_steps`` is the final fine-tune length.
        removed: Filled with the plan: group -> removed channels (see ``apply_policy``).
        device: The target device: the model is fine-tuned, scored and timed there.

    Returns:
        The final model (on the CPU, for export) and its measurements (plain data).
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    model = prune_and_train(
        task.model, task.train, task.input_shape, policy, settings, timings, device, removed=removed
    )
    base = on_device(task.model, device)
    base_latency, latency = compare_latency(base, model, task.input_shape, settings.latency, device)
    val_accuracy = evaluate_metric(model, task.val, settings.metric, device=device)
    model = model.cpu()
    sample = example_batch(task.input_shape)
    final = {
        "val_accuracy": val_accuracy,
        "latency_ms": latency,
        "baseline_latency_ms": base_latency,
        "flops": count_flops(model, sample),
        "params": count_params(model),
        "size_bytes": serialized_size(model),
        "finetune_steps": settings.finetune_steps,
        "timings": timings,
    }
    final["wall_s"] = time.perf_counter() - start
    return model, final


def score_on_test(
    task: Task, model: nn.Module, settings: TrialSettings, device: str = "cpu"
) -> dict[str, float]:
    """The job's metric on the test split for ``model`` and the baseline. The test split is used
    here, and only here: for the chosen model (it decides nothing)."""
    return {
        "test_accuracy": evaluate_metric(on_device(model, device), task.test, settings.metric, device=device),
        "baseline_test_accuracy": evaluate_metric(
            on_device(task.model, device), task.test, settings.metric, device=device
        ),
    }
