"""The Python API: the one entry the command line, benchmarks and users' code call.

import prunepilot
result = prunepilot.search(model, train=train, val=val, test=test, budget="2x", trials=24)
result.model, result.budget_met, result.run_dir, result.report
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from prunepilot.errors import UsageError
from prunepilot.inputs import dtype_name
from prunepilot.pipeline import SearchResult, resume_spec, run_job
from prunepilot.spec import RESUMABLE, JobSpec
from prunepilot.tasks.loading import checked_task

__all__ = ["SearchResult", "run", "search"]

#: JobSpec fields that name the model and data; ``search`` takes objects instead.
_OBJECT_FIELDS = ("model", "weights", "data", "task", "input_shape", "input_dtype", "python_objects")


def search(
    model: nn.Module,
    *,
    train: Dataset,
    val: Dataset,
    test: Dataset | None = None,
    budget: str,
    example_input: torch.Tensor | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    **settings: Any,
) -> SearchResult:
    """Searches pruning policies for ``model`` and returns the best model within ``budget``.

    The same job as ``prunepilot search``, run on objects instead of import paths: the run
    directory holds the same files, and the search is resumed by calling again with the run's
    ``name`` and ``resume=True``.

    Args:
        model: The trained model (never changed).
        train: (input tensor, integer label) pairs for BatchNorm recalibration and fine-tuning.
        val: Pairs that score trials.
        test: Pairs that score the chosen model once; None scores it on ``val`` (said in the log).
        budget: What the model must fit: ``30ms``, ``2x``, ``50%``, ``120MFLOPs``, ``2MB`` ...
        example_input: One batch of inputs; its shape without the batch dimension and its dtype must
            match the data's. None takes them from the first training sample.
        progress: Show progress bars.
        log: Where progress lines go (stdout by default).
        **settings: Other :class:`~prunepilot.spec.JobSpec` fields (``trials``, ``seed``,
            ``finetune_steps``, ``workers``, ``out``, ``name``, ``resume``, ``metric`` ...).

    Raises:
        UsageError: naming what is wrong (a setting, the data, the model, an unreachable budget).
    """
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"The 'model' parameter of search must be a torch.nn.Module. Got {type(model).__name__} instead."
        )
    known = {f.name for f in fields(JobSpec)} - set(_OBJECT_FIELDS) - {"budget"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise UsageError(f"Unknown setting(s) {unknown} of search; accepted: {sorted(known)}.")
    shape = dtype = None
    if example_input is not None:
        if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2:
            raise UsageError(
                "The 'example_input' parameter of search must be a batch of inputs (a tensor with a "
                f"batch dimension). Got {getattr(example_input, 'shape', type(example_input).__name__)} "
                "instead."
            )
        shape, dtype = tuple(example_input.shape[1:]), dtype_name(example_input.dtype)
    if test is None:
        (log or print)("warning: no test split given; the chosen model is scored on the validation split.")
        test = val
    name = f"{type(model).__module__}.{type(model).__qualname__}"
    task = checked_task(name, model, (train, val, test), "the datasets given", shape, dtype)
    if settings.get("resume"):
        ignored = sorted(set(settings) - {"resume", "name", "out", *RESUMABLE})
        if ignored:
            raise UsageError(
                f"Setting(s) {ignored} cannot change when a run is resumed (its saved job is used); "
                f"accepted with resume=True: {sorted(RESUMABLE)}."
            )
        overrides = {k: settings[k] for k in RESUMABLE if k in settings}
        spec = resume_spec(settings.get("out", JobSpec.out), settings.get("name"), overrides)
    else:
        spec = JobSpec(budget=budget, input_shape=task.input_shape, python_objects=True, **settings)
    return run_job(spec, progress=progress, log=log, task=task)


class _CallableSearch(types.ModuleType):
    """The ``prunepilot.search`` package, callable: ``prunepilot.search(model, ...)`` is :func:`search`
    (one name for the product's verb and the package that implements it)."""

    def __call__(self, *args: Any, **kwargs: Any) -> SearchResult:
        return search(*args, **kwargs)


sys.modules["prunepilot.search"].__class__ = _CallableSearch


def run(spec: JobSpec, progress: bool = True, log: Callable[[str], None] | None = None) -> SearchResult:
    """Runs a job as ``prunepilot search`` does (the model and data named by ``spec``)."""
    return run_job(spec, progress=progress, log=log)
