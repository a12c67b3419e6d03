"""Gradual pruning of the chosen model: the policy reached in stages, fine-tuning between them.

The share of each group's channels removed follows the cubic ramp of automated gradual pruning
(Zhu and Gupta, 2017): after stage ``k`` of ``K``, ``r_k = r * (1 - (1 - k / K) ** 3)`` of the
policy's ratio ``r``, so most is removed early, while the model has the most capacity to recover,
and the last stages remove little. The last stage lands on exactly the channels one-shot pruning
keeps (the same architecture, so the same cost), and the blocks the policy removes go at the first
stage. Channels are ranked anew at each stage, on the fine-tuned model, by the group's criterion.
Each stage is pruned in its own indexing; the stages' removals are mapped back to the base model's
channels and merged into one :class:`~prunepilot.policies.Plan`, which re-creates the model from
the base model in one step (as every export does).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from prunepilot.policies import Plan, Policy, PrunedModel
from prunepilot.policies.apply import group_sizes
from prunepilot.policies.policy import GroupSetting, kept_channels
from prunepilot.trial import TrialSettings, prune_and_train

__all__ = ["agp_ramp", "prune_gradually", "schedule_record", "stage_steps"]


def agp_ramp(stages: int) -> list[float]:
    """The share of the final ratio reached after each stage: ``1 - (1 - k / K) ** 3``, ending at 1."""
    return [1.0 - (1.0 - k / stages) ** 3 for k in range(1, stages + 1)]


def stage_steps(total: int, stages: int) -> list[int]:
    """Fine-tune steps after each stage: ``total // (2 * stages)`` for each but the last, which gets
    the rest (at least half, at the final architecture); they sum to ``total``."""
    early = total // (2 * stages)
    return [early] * (stages - 1) + [total - early * (stages - 1)]


def schedule_record(settings: TrialSettings) -> dict:
    """What a report says of the schedule of a final fine-tune with ``settings``."""
    if settings.schedule != "gradual":
        return {"kind": settings.schedule}
    stages = settings.schedule_stages
    return {"kind": "gradual", "stages": stages, "ramp": [round(r, 4) for r in agp_ramp(stages)],
            "steps": stage_steps(settings.finetune_steps, stages)}  # fmt: skip


def prune_gradually(
    model: nn.Module,
    train: torch.utils.data.Dataset,
    input_shape: tuple[int, ...],
    policy: Policy,
    settings: TrialSettings,
    timings: dict[str, float],
    device: str | torch.device = "cpu",
) -> PrunedModel:
    """``policy`` applied to a copy of ``model`` in ``settings.schedule_stages`` stages, each
    followed by BatchNorm recalibration and a fine-tune (see :func:`stage_steps`); ``timings`` get
    the stages' sums; with ``settings.distill`` each fine-tune distils from ``model``. ``model`` is
    not changed.

    Returns:
        The fine-tuned model (on ``device``) and the plan that re-creates its architecture from
        ``model`` in one step.
    """
    sizes = group_sizes(model, policy.removed_blocks, input_shape)
    final_keep = {
        name: kept_channels(len(size.channels) // size.unit, setting.ratio,
                            1 if size.unit > 1 else policy.round_to)
        for name, setting in policy.groups.items()
        if name in sizes and (size := sizes[name]) and setting.ratio > 0
    }  # fmt: skip
    alive = {name: list(sizes[name].channels) for name in final_keep}
    removed: dict[str, list[int]] = {name: [] for name in final_keep}
    stages = settings.schedule_stages
    current = model
    ramp, steps_of = agp_ramp(stages), stage_steps(settings.finetune_steps, stages)
    for stage, (share, steps) in enumerate(zip(ramp, steps_of)):
        targets = {}  # the stage's group name -> (the whole model's name, ratio of what is left)
        for name, keep_final in final_keep.items():
            size = sizes[name]
            units0, units = len(size.channels) // size.unit, len(alive[name]) // size.unit
            keep = keep_final  # the last stage lands on one-shot's channel counts
            if stage < stages - 1:
                keep = max(keep_final, kept_channels(units0, share * policy.groups[name].ratio, 1))
            if keep < units:
                targets[name if stage == 0 else size.local_name] = (name, 1.0 - keep / units)
        stage_policy = Policy(
            {local: GroupSetting(ratio, policy.groups[n].criterion) for local, (n, ratio) in targets.items()},
            removed_blocks=policy.removed_blocks if stage == 0 else (),
            sparsity=policy.sparsity if stage == stages - 1 else 0.0,  # on the final architecture
            input_features=policy.input_features if stage == stages - 1 else None,
        )
        stage_settings = replace(settings, finetune_steps=steps, seed=settings.seed + stage)
        stage_timings: dict[str, float] = {}
        current, stage_plan = prune_and_train(current.cpu(), train, input_shape, stage_policy, stage_settings,
                                              stage_timings, device, teacher=model)  # fmt: skip
        for phase, seconds in stage_timings.items():
            timings[phase] = timings.get(phase, 0.0) + seconds
        for local, drop in stage_plan.channels.items():  # back to the base model's channel indices
            name = targets[local][0]
            gone = {alive[name][i] for i in drop}
            removed[name].extend(gone)
            alive[name] = [c for c in alive[name] if c not in gone]
    channels = {name: sorted(drop) for name, drop in removed.items() if drop}
    plan = Plan(channels, policy.removed_blocks, policy.input_features)
    return PrunedModel(current, plan)
