"""Stage one of a job: load the model and data, find what may be pruned, build the search space,
measure the baseline, and refuse what cannot work, all before a run directory exists."""

from __future__ import annotations

import dataclasses
import fnmatch
import statistics
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from prunepilot.adapters import LogitsModel
from prunepilot.errors import UsageError
from prunepilot.evaluators import evaluate_model, measure_latency
from prunepilot.evaluators.metric import Metric, evaluate_metric
from prunepilot.families.feature_ranking import rank_features
from prunepilot.families.features import check_single_use
from prunepilot.families.slimming import slim
from prunepilot.inputs import on_device
from prunepilot.policies import DiscoveryBounds, GroupInfo, Policy, discover
from prunepilot.runtimes import DeployError
from prunepilot.search import SearchSpace
from prunepilot.settings import field_owner, invalid_field, named
from prunepilot.spec import BUILTIN_LATENCY_BATCH, DEFAULT_LATENCY_BATCH, ResolvedJob
from prunepilot.tasks import Task, load_task
from prunepilot.tasks.checks import check_data as check_task_data
from prunepilot.trial import TrialSettings, deploy

__all__ = [
    "PreparedJob",
    "measure_baseline",
    "prepare",
]

#: Latency measurements of the baseline (their median sets a relative budget).
BASELINE_ROUNDS = 3


@dataclass(frozen=True)
class PreparedJob:
    """A job with its model and data loaded and checked, and its search space built.

    Attributes:
        job: The resolved job.
        task: The model and its splits.
        groups: The groups the search may prune.
        space: The search space.
        settings: How trials are trained and measured.
        left_whole: Groups never pruned -> why (listed by ``--dry-run``).
        int8_note: Why a search of the precision (``--quantize search``) runs fp32 only (the base
            model cannot be quantized); None otherwise.
        slimming: What the slimming warm-up did (see :func:`~prunepilot.families.slimming.slim`); None
            without one.
        features: The input features' ranking (see :func:`~prunepilot.families.feature_ranking.rank_features`)
            when the search may drop some; None otherwise.
    """

    job: ResolvedJob
    task: Task
    groups: list[GroupInfo]
    space: SearchSpace
    settings: TrialSettings
    left_whole: dict[str, str] = field(default_factory=dict)
    int8_note: str | None = None
    slimming: dict[str, Any] | None = None
    features: dict[str, Any] | None = None

    @property
    def spec(self):
        """The job's settings."""
        return self.job.spec

    @property
    def source(self) -> dict[str, Any]:
        """Where the base model's class comes from, for a plan: a built-in task, a factory, or an
        object given in Python; and, when its class scores are read from its output, where."""
        if self.spec.python_model:
            source: dict[str, Any] = {"python": self.spec.python_model}
        elif self.spec.model is None:
            source = {"task": self.spec.task}
        else:
            source = {"factory": self.spec.model}
        if isinstance(self.task.model, LogitsModel):
            source.update(logits_model=True, output_key=self.task.model.output_key)
            if self.task.model.inputs is not None:
                source["inputs"] = self.task.model.inputs.to_dict()
            if self.task.model.outputs is not None:
                source["outputs"] = self.task.model.outputs.to_dict()
        return source

    def with_reference(self, baseline: dict[str, Any]) -> TrialSettings:
        """The trial settings of a latency budget's run: trials time their pruned model alongside
        the base model, so that drift of the machine cancels."""
        if self.job.budget is None or self.job.budget.cost != "latency_ms":
            return self.settings
        return replace(self.settings, reference_latency_ms=baseline["latency_ms"])


def prepare(
    job: ResolvedJob,
    start_policy: Policy | None = None,
    progress: bool = True,
    on_device: bool = True,
    task: Task | None = None,
    check_data: bool = True,
    slimming: bool = True,
) -> PreparedJob:
    """Loads and checks the job's task, groups, space and settings.

    Args:
        job: The resolved job.
        start_policy: The user's policy (a warm start), checked against the model.
        progress: Show progress of loading (the built-in tasks train once).
        on_device: Check the target device (``prunepilot report`` needs no GPU).
        task: The model and data given as Python objects (``prunepilot.search``); None loads what
            the job names.
        check_data: Check the data before anything is measured (:func:`~prunepilot.tasks.checks.check_data`);
            a finished run's report needs no check.
        slimming: Run the job's slimming warm-up (or take it from the cache); checking a job needs
            none.

    Raises:
        UsageError: naming what is wrong.
    """
    spec = job.spec
    if on_device:
        _check_device(spec.device)
    if task is None:
        if spec.python_model:
            raise UsageError(
                f"The run {spec.name!r} searched a model given in Python ({spec.python_model}), which "
                "the command line cannot re-create; from Python, prunepilot.search(model, ..., "
                "name=..., resume=True) continues the run and prunepilot.export.load_plan(run, "
                "base_model=model) rebuilds its chosen model."
            )
        task = load_task(
            spec.model, spec.weights, spec.data, spec.input_shape, progress, spec.task, spec.input_dtype,
            **spec.reading(),
        )  # fmt: skip
    _check_several_inputs(task, spec.input_features)
    builtin = spec.model is None and not spec.python_model
    settings = spec.trial_settings(BUILTIN_LATENCY_BATCH if builtin else DEFAULT_LATENCY_BATCH)
    packed = getattr(task.model, "outputs", None)
    if packed is not None and spec.distill:
        raise UsageError(
            "distill reads class scores, and the model's output holds several tensors with no 'logits' "
            "among them; leave distill off, or return the scores to distil under 'logits'.",
            "distill",
        )
    if packed is not None:  # the metric gets the structured output back
        settings = dataclasses.replace(settings, metric=dataclasses.replace(settings.metric, outputs=packed))
    _check_metric(task, settings.metric)
    if check_data:
        check_task_data(task, settings.batch_size, settings.metric)
    slimmed = None
    if slimming and spec.slimming_steps:
        task, slimmed = _slim(task, spec.slimming_steps, spec.slimming_reg, settings)
    bounds = DiscoveryBounds(spec.discovery_timeout, spec.discovery_memory_gb)
    found = discover(task.model, task.input_shape, bounds, spec.ratio_max)
    discovered, removable = list(found.groups), list(found.blocks)
    if start_policy is not None:  # a policy may name any group; excluded ones are dropped from it
        start_policy.check_groups((g.name for g in discovered), f"The policy file {spec.policy!r}")
        start_policy.check_blocks(removable, f"The policy file {spec.policy!r}")
    groups, blocks = _searched(discovered, removable if spec.block_removal else [], spec.exclude)
    criteria = {"criteria": tuple(spec.criteria)} if spec.criteria else {}
    if spec.round_to_choices:
        criteria["round_to_choices"] = tuple(spec.round_to_choices)
    int8_note = _check_deployable(task, settings)
    if int8_note is not None:  # the search of the precision falls back to fp32 for every policy
        settings = replace(settings, quantize="none")
    space = SearchSpace(
        tuple(groups),
        tuple(blocks),
        ratio_low=spec.ratio_min,
        ratio_high=spec.ratio_max,
        round_to=spec.round_to,
        quantize=settings.quantize,
        sparsity_high=spec.sparsity_max if spec.sparsity == "global" else 0.0,
        **criteria,
    )
    ranking = None
    if spec.input_features:  # the input must feed one Linear; features ranked on the training split
        check_single_use(task.model, task.input_shape)
        ranking = rank_features(task.train, spec.seed)
        space = replace(space, feature_order=ranking.order, input_ratio_high=spec.input_ratio_max)
    return PreparedJob(job, task, groups, space, settings, dict(found.left_whole), int8_note, slimmed,
                       ranking and ranking.to_dict())  # fmt: skip


def _slim(task: Task, steps: int, reg: float, settings: TrialSettings) -> tuple[Task, dict[str, Any]]:
    """The task with its model after the slimming warm-up (the model as given kept as the baseline)."""
    model, record = slim(task.model, task.train, steps, reg, settings)
    if model is task.model:  # no BatchNorm: nothing to slim
        return task, record
    record["val_accuracy"] = evaluate_metric(model, task.val, settings.metric)
    return replace(task, model=model, unslimmed=task.model), record


def measure_baseline(prepared: PreparedJob) -> dict[str, Any]:
    """The baseline's validation metric and costs, as it runs in the job's runtime (fp32); latency is
    the median of a few measurements."""
    task, settings, device = prepared.task, prepared.settings, prepared.spec.device
    model = on_device(task.baseline_model, device)
    shipped = deploy(model, task.train, task.input_shape, settings)
    metrics = evaluate_model(
        model, task.val, task.input_shape, settings.latency, device=device, metric=settings.metric,
        deployed=shipped,
    ).to_dict()  # fmt: skip
    repeats = [metrics["latency_ms"]]
    repeats += [
        measure_latency(shipped.module, task.input_shape, settings.latency, device)
        for _ in range(BASELINE_ROUNDS - 1)
    ]
    metrics["latency_ms"] = statistics.median(repeats)
    return metrics


def _check_several_inputs(task: Task, input_features: bool) -> None:
    """Refuses what a model of several inputs cannot have: input features (there is no one input of
    flat features)."""
    several = task.model.inputs if isinstance(task.model, LogitsModel) else None
    if several is None:
        return
    names = list(several.names)
    one = f"; {named('input_key')} {names[0]} feeds it one input" if not several.positional else ""
    if input_features:
        accepted = f"false for a model of several inputs ({names}{one})"
        raise invalid_field("input_features", accepted, input_features)


def _check_device(device: str) -> None:
    """Refuses a CUDA target on a machine without CUDA (the baseline and the final model are
    measured here)."""
    if device != "cpu" and not torch.cuda.is_available():
        raise UsageError(
            f"The 'device' parameter of {field_owner('device')} names {device!r} but CUDA is not available "
            "on this machine; use 'cpu' or run where the target GPU is.",
            "device",
        )


def _searched(
    groups: list[GroupInfo], blocks: list[str], exclude: list[str] | None
) -> tuple[list[GroupInfo], list[str]]:
    """The groups the search may prune and the blocks it may remove: all but those matching an
    ``exclude`` name or pattern.

    Raises:
        UsageError: when a pattern matches no group or block, or no group is left to prune.
    """
    patterns = exclude or []

    def excluded(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in [*(g.name for g in groups), *blocks]):
            also = f" and the removable blocks {blocks}" if blocks else ""
            raise UsageError(
                f"The 'exclude' parameter of {field_owner('exclude')} names {pattern!r}, which matches no "
                f"prunable group{' or removable block' if blocks else ''}; the groups are "
                f"{[g.name for g in groups]}{also}.",
                "exclude",
            )
    kept = [g for g in groups if not excluded(g.name)]
    if not kept:
        raise UsageError(
            f"The 'exclude' parameter of {field_owner('exclude')} leaves no group to prune.", "exclude"
        )
    # A block goes with every layer in it: one that holds an excluded group is excluded too.
    left_alone = [g.name for g in groups if excluded(g.name)]
    kept_blocks = [
        b for b in blocks
        if not (excluded(b) or excluded(b + ".") or any(n.startswith(b + ".") for n in left_alone))
    ]  # fmt: skip
    return kept, kept_blocks


def _check_deployable(task: Task, settings: TrialSettings) -> str | None:
    """Deploys the base model in the job's runtime (and in int8 when the job quantizes), so that a
    model the runtime cannot take is refused now, naming the operator, rather than failing every
    trial.

    Returns:
        With ``quantize="search"``, why the base model cannot be quantized (the search then runs
        fp32 only); else None.

    Raises:
        UsageError: when the runtime cannot take the model, or with ``quantize="int8"`` cannot
            quantize it.
    """
    if settings.runtime == "torch":
        return None
    deploy(task.model, task.train, task.input_shape, settings)
    if settings.quantize == "none":
        return None
    try:
        deploy(task.model, task.train, task.input_shape, replace(settings, quantize="int8"), int8=True)
    except DeployError as exc:
        if settings.quantize == "int8":
            raise UsageError(
                f"{exc}; --quantize int8 needs a model it can quantize: use --quantize search (fp32 "
                "where int8 fails) or --quantize none.",
                "quantize",
            ) from exc
        return str(exc)
    return None


def _check_metric(task: Task, metric: Metric) -> None:
    """Scores the base model on the validation split (as every trial will), so that a broken metric
    is bad input reported now rather than a failure of every trial."""
    if metric.resolve() is None:
        return  # top-1 accuracy
    try:
        evaluate_metric(task.model, task.val, metric)
    except Exception as exc:  # noqa: BLE001 - the user's metric failing is bad input
        raise UsageError(
            f"The metric {metric.name!r} fails on the model's outputs and the labels of the validation "
            f"split ({type(exc).__name__}: {exc}); it must map (outputs, labels) to a number.",
            "metric",
        ) from exc
