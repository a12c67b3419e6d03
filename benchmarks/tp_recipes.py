"""Torch-Pruning's own recipes as peers of the search: global pruning (``global_pruning=True``, one
threshold on importance across every layer) with LAMP or Taylor importance, at one overall ratio.

A peer's trial prunes a copy of the base model with Torch-Pruning's ``MetaPruner`` at the ratio its
policy carries (a uniform policy: every group's ratio is the overall ratio, the criterion names the
importance), then recalibrates BatchNorm, fine-tunes and measures exactly as a prunepilot trial
does; its final model gets the same final fine-tune and the same side-by-side re-timing.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import replace

import torch_pruning as tp
from torch import nn

from prunepilot.adapters.batches import batches
from prunepilot.evaluators.measure import evaluate_model
from prunepilot.evaluators.metric import evaluate_metric
from prunepilot.final import FINAL_CANDIDATES, compare_latency
from prunepilot.gate import NullGate
from prunepilot.inputs import example_batch
from prunepilot.policies import Policy, PrunedModel
from prunepilot.tasks.base import TaskData
from prunepilot.trial import TrialResult, TrialSettings, deploy, prune_and_train

#: Peer name -> the Torch-Pruning importance its policies' criterion stands for.
RECIPES = {"global_lamp": "lamp", "global_taylor": "taylor"}


def _importance(criterion: str) -> tp.importance.Importance:
    if criterion == "lamp":
        return tp.importance.LAMPImportance(p=2)
    return tp.importance.GroupTaylorImportance()


def global_prune(model: nn.Module, train, input_shape: tuple[int, ...], policy: Policy,
                 settings: TrialSettings) -> PrunedModel:  # fmt: skip
    """A copy of ``model`` pruned by Torch-Pruning's global pruning at the policy's overall ratio
    (the classifier, the last ``Linear``, is left whole, as the recipes do)."""
    setting = next(iter(policy.groups.values()))
    pruned = copy.deepcopy(model).cpu().train()
    example = example_batch(input_shape, 2)
    classifier = [m for m in pruned.modules() if isinstance(m, nn.Linear)][-1:]
    pruner = tp.pruner.MetaPruner(
        pruned, example, importance=_importance(setting.criterion), global_pruning=True,
        pruning_ratio=setting.ratio, ignored_layers=classifier,
    )  # fmt: skip
    if setting.criterion == "taylor":  # Taylor needs the loss's gradients
        pruned.zero_grad()
        for inputs, labels in itertools.islice(batches(train, 64), settings.gradient_batches):
            nn.functional.cross_entropy(pruned(inputs), labels).backward()
    pruner.step()
    pruned.zero_grad()
    return PrunedModel(pruned.eval(), None)  # no plan: the benchmark exports nothing


def global_trial(model: nn.Module, data: TaskData, policy: Policy, settings: TrialSettings, *,
                 device="cpu", gate: NullGate | None = None) -> TrialResult:  # fmt: skip
    """A prunepilot trial with Torch-Pruning's global pruning in place of the policy's application."""
    gate = gate or NullGate()
    timings: dict[str, float] = {}
    pruned, _ = prune_and_train(model, data.train, data.input_shape, policy, settings, timings, device, gate,
                                global_prune)  # fmt: skip
    shipped = deploy(pruned, data.train, data.input_shape, settings)
    reference = (deploy(model.to(device), data.train, data.input_shape, settings).module,
                 settings.reference_latency_ms) if settings.reference_latency_ms else None  # fmt: skip
    metrics = evaluate_model(pruned, data.val, data.input_shape, settings.latency, timings, device, gate,
                             reference, metric=settings.metric, deployed=shipped)  # fmt: skip
    return TrialResult(**metrics.to_dict(), timings=timings, int8=False, int8_fallback=None)


def global_final(task, policy: Policy, settings: TrialSettings) -> dict:
    """The peer's final model: global pruning, the final fine-tune, validation score and latency
    re-timed beside the baseline (as ``prunepilot.final.finalize`` measures a policy)."""
    timings: dict[str, float] = {}
    pruned, _ = prune_and_train(task.model, task.train, task.input_shape, policy, settings, timings,
                                pruning=global_prune)  # fmt: skip
    base, latency = compare_latency(task.model, pruned, task.input_shape, settings.latency)
    return {
        "val_accuracy": evaluate_metric(pruned, task.val, settings.metric),
        "test_accuracy": evaluate_metric(pruned, task.test, settings.metric),
        "baseline_test_accuracy": evaluate_metric(task.model, task.test, settings.metric),
        "latency_ms": latency,
        "baseline_latency_ms": base,
    }


def sweep_policy(space, ratio: float, criterion: str):
    """A uniform policy; for a global recipe, its overall ratio with the recipe's importance."""
    if criterion == "l1":
        return space.uniform(ratio, "l1")
    policy = space.uniform(ratio)
    groups = {name: replace(setting, criterion=criterion) for name, setting in policy.groups.items()}
    return replace(policy, groups=groups, removed_blocks=())


def final_of_recipe(ranked, task, settings, budget) -> dict | None:
    """``finalize_candidates``' choice for a Torch-Pruning recipe: its three best points within the
    budget by trial score (then cheaper ones until one meets it), each with the final fine-tune and
    re-timed beside the baseline; the best validation score among those that meet the budget."""
    finished = []
    for trial in ranked:
        if len(finished) >= FINAL_CANDIDATES and any(f["budget_met"] for f in finished):
            break
        final = global_final(task, Policy.from_dict(trial.user_attrs["policy"]), settings)
        final["budget_met"] = budget.limit_for(final["baseline_latency_ms"]).fits(final["latency_ms"])
        final["number"] = trial.number
        finished.append(final)
    fitting = [f for f in finished if f["budget_met"]]
    return max(fitting, key=lambda f: f["val_accuracy"]) if fitting else (finished[-1] if finished else None)
