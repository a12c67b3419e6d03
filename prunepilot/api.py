"""The Python API: the one entry the command line, benchmarks and users' code call.

import prunepilot
result = prunepilot.search(model, train=train, val=val, test=test, budget="2x", trials=24)
result.model, result.budget_met, result.run_dir, result.report
"""

from __future__ import annotations

import copy
import inspect
import sys
import types
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from prunepilot.errors import UsageError
from prunepilot.imports import callable_name
from prunepilot.inputs import dtype_name
from prunepilot.pipeline import SearchResult, resume_spec, run_job
from prunepilot.rundir import resume_command_line
from prunepilot.settings import settings_of
from prunepilot.spec import RESUMABLE, JobSpec
from prunepilot.tasks.loading import checked_task

__all__ = ["SearchResult", "run", "search"]


def search(
    model: nn.Module,
    *,
    train: Dataset | DataLoader,
    val: Dataset | DataLoader,
    test: Dataset | DataLoader | None = None,
    budget: str | None = None,
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
        train: A Dataset or DataLoader for BatchNorm recalibration and fine-tuning: its batches are
            (inputs, integer labels) tuples, or dicts holding both (see ``input_key``,
            ``label_key``). A DataLoader is used as it is (its batch size, its augmentation).
        val: The same, scoring trials.
        test: The same, scoring the chosen model once; None scores it on ``val`` (said in the log).
        budget: What the model must fit: ``30ms``, ``2x``, ``50%``, ``120MFLOPs``, ``2MB`` ...
            (required, except for a dry run and when resuming, which keeps the saved one).
        example_input: One batch of inputs; its shape without the batch dimension and its dtype must
            match the data's. None takes them from the first training sample.
        progress: Show progress bars.
        log: Where progress lines go (stdout by default).
        **settings: Other :class:`~prunepilot.spec.JobSpec` fields (``trials``, ``seed``,
            ``finetune_steps``, ``workers``, ``out``, ``name``, ``resume``, ``output_key``,
            ``input_key``, ``label_key`` ...). ``loss`` and ``metric`` may be callables.

    Raises:
        UsageError: naming what is wrong (a setting, the data, the model, an unreachable budget).
    """
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"The 'model' parameter of search must be a torch.nn.Module. Got {type(model).__name__} instead."
        )
    known = {s.name for s in settings_of(JobSpec) if s.api}
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
    model_class = f"{type(model).__module__}.{type(model).__qualname__}"
    if settings.get("resume"):
        spec = _resumed(model_class, budget, settings)
    else:
        spec = JobSpec(budget=budget, python_model=model_class, **settings)
    # Checked and searched on a copy: the caller's model keeps its mode and gradients.
    task = checked_task(
        model_class, copy.deepcopy(model), (train, val, test), "the data given", shape, dtype,
        shape_source="example_input", dtype_source="example_input", **spec.reading(),
    )  # fmt: skip
    if spec.input_shape is not None and tuple(spec.input_shape) != tuple(task.input_shape):
        raise UsageError(
            f"The run {spec.name!r} searched inputs of shape {tuple(spec.input_shape)}; "
            f"the data given has {tuple(task.input_shape)}."
        )
    return run_job(replace(spec, input_shape=task.input_shape), progress=progress, log=log, task=task)


def _resumed(model_class: str, budget: str | None, settings: dict) -> JobSpec:
    """The saved job of the run ``settings["name"]``, checked to be a Python run of this model's
    class, with the settings that may change on resume applied (and the callables given again).

    Raises:
        UsageError: when the run is not found, is not a Python run of a model of this class, or a
            setting that cannot change on resume differs from the saved one.
    """
    name = settings.get("name")
    if not name:
        raise UsageError("The 'name' parameter of search must name the run to continue when resume=True.")
    saved = resume_spec(settings.get("out", JobSpec.out), name, {})
    if saved.python_model is None:
        raise UsageError(
            f"The run {name!r} was started from the command line; continue it with: "
            f"{resume_command_line(str(name), saved.out)}"
        )
    if saved.python_model != model_class:
        raise UsageError(f"The run {name!r} searched a {saved.python_model}; got a {model_class}.")
    may_change = {"resume", "name", "out", *RESUMABLE}
    given = {"budget": budget, **settings}
    changed = sorted(
        k for k, v in given.items()
        if k not in may_change and v is not None and _named(getattr(saved, k)) != _named(v)
    )  # fmt: skip
    if changed:
        raise UsageError(
            f"Setting(s) {changed} cannot change when a run is resumed (its saved job is used); "
            f"what may change with resume=True: {sorted(RESUMABLE)}."
        )
    again = [key for key in ("loss", "metric") if callable(settings.get(key))]  # not saved: given again
    return replace(saved, **{key: settings[key] for key in (*RESUMABLE, *again) if key in settings})


def _named(value: object) -> object:
    """``value``, or the name a callable is saved by (a callable given again matches its record)."""
    return callable_name(value) if callable(value) else value


class _CallableSearch(types.ModuleType):
    """The ``prunepilot.search`` package, callable: ``prunepilot.search(model, ...)`` is :func:`search`
    (one name for the product's verb and the package that implements it)."""

    def __call__(self, *args: Any, **kwargs: Any) -> SearchResult:
        return search(*args, **kwargs)


_package = sys.modules["prunepilot.search"]
_package.__class__ = _CallableSearch
_package.__signature__ = inspect.signature(search)  # help() and IDEs show the API's arguments


def run(spec: JobSpec, progress: bool = True, log: Callable[[str], None] | None = None) -> SearchResult:
    """Runs a job as ``prunepilot search`` does (the model and data named by ``spec``)."""
    return run_job(spec, progress=progress, log=log)
