"""The chosen policy, made for real: re-applied, fine-tuned longer, tested once, re-measured."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from prunepilot.evaluators import (
    LatencySettings,
    count_flops,
    count_params,
    serialized_size,
    time_models,
    top1_accuracy,
)
from prunepilot.policies import Policy
from prunepilot.tasks.base import Task
from prunepilot.trial import TrialSettings, prune_and_train

#: The final model and the baseline get this many times the trials' timed passes.
FINAL_REPEATS_FACTOR = 5


def compare_latency(
    baseline: nn.Module, candidate: nn.Module, input_shape: tuple[int, ...], settings: LatencySettings
) -> tuple[float, float]:
    """Medians of the two models timed in alternating rounds, so drift hits both alike."""
    longer = replace(settings, repeats=FINAL_REPEATS_FACTOR * settings.repeats)
    base, cand = time_models([baseline, candidate], input_shape, longer)
    return base, cand


def finalize(
    task: Task, policy: Policy, settings: TrialSettings, removed: dict[str, list[int]] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Re-applies ``policy`` to a fresh copy of the task's model and measures the result.

    The test split is used here, and only here: for the chosen model and the baseline.

    Args:
        task: The task (model and splits).
        policy: The chosen policy.
        settings: Trial settings whose ``finetune_steps`` is the final fine-tune length.
        removed: Filled with the plan: group -> removed channels (see ``apply_policy``).

    Returns:
        The final model and its measurements (plain data).
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    model = prune_and_train(
        task.model, task.train, task.input_shape, policy, settings, timings, removed=removed
    )
    sample = torch.zeros(1, *task.input_shape)
    base_latency, latency = compare_latency(task.model, model, task.input_shape, settings.latency)
    final = {
        "val_accuracy": top1_accuracy(model, task.val),
        "test_accuracy": top1_accuracy(model, task.test),
        "baseline_test_accuracy": top1_accuracy(task.model, task.test),
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
