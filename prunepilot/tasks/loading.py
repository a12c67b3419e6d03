"""Loading a user's model and data from import paths (``pkg.module:factory``), with clear errors."""

from __future__ import annotations

import contextlib
import copy
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from prunepilot.errors import UsageError
from prunepilot.imports import import_object
from prunepilot.inputs import INPUT_DTYPES, InputShape, dtype_name
from prunepilot.tasks.base import Task
from prunepilot.tasks.builtin import DEFAULT_TASK, builtin_task, digits_datasets, get_builtin


def parse_input_shape(text: str) -> tuple[int, ...]:
    """Parses ``1,8,8`` or ``1x8x8`` (one sample, without the batch dimension)."""
    parts = re.split(r"[,x ]+", text.strip().strip("()[]"))
    try:
        shape = tuple(int(p) for p in parts if p)
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise UsageError(
            f"--input-shape must be positive integers such as '3,32,32' (no batch dimension). "
            f"Got {text!r} instead."
        )
    return shape


def load_task(
    model: str | None = None,
    weights: str | None = None,
    data: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    progress: bool = True,
    task: str = DEFAULT_TASK,
    input_dtype: str | None = None,
) -> Task:
    """A built-in task (``task``), or the user's model and data, checked to work together.

    Raises:
        UsageError: one line naming what is wrong (import, factory, checkpoint, data, shapes).
    """
    if model is None:
        if data is not None or weights is not None:
            raise UsageError("--data and --weights need --model (the built-in task has its own).", "data")
        loaded = builtin_task(task, progress=progress)
    else:
        if task != DEFAULT_TASK:
            raise UsageError(
                f"--task {task!r} names a built-in task; it cannot be combined with --model.", "task"
            )
        with _blame("model"):
            network = _call(import_object(model, "--model"), model, "--model")
            if not isinstance(network, nn.Module):
                raise UsageError(
                    f"The --model factory {model!r} must return a torch.nn.Module. "
                    f"Got {type(network).__name__} instead."
                )
        if weights is not None:
            with _blame("weights"):
                _load_weights(network, weights)
        elif progress:
            print("warning: no --weights given; pruning the model as its factory built it.", file=sys.stderr)
        with _blame("data"):
            splits = (
                digits_datasets() if data is None else _call(import_object(data, "--data"), data, "--data")
            )
        return checked_task(
            model, network, splits, data or "the built-in digits data", input_shape, input_dtype
        )
    return checked_task(loaded.name, loaded.model, (loaded.train, loaded.val, loaded.test), task,
                        input_shape, input_dtype)  # fmt: skip


def checked_task(
    name: str,
    model: nn.Module,
    splits: object,
    source: str,
    input_shape: tuple[int, ...] | None = None,
    input_dtype: str | None = None,
    shape_source: str = "--input-shape",
    dtype_source: str = "--input-dtype",
) -> Task:
    """A task of ``model`` and its (train, val, test) ``splits``, checked to work together: the
    splits are datasets of (input tensor, integer label) pairs of one shape, the shape and dtype
    are those given (when given), and the model runs and trains on a batch.

    Args:
        name: What reports call the task.
        model: The model to prune.
        splits: (train, val, test) datasets.
        source: Where the splits come from, for messages.
        input_shape: One sample's expected shape, or None.
        input_dtype: One sample's expected dtype name, or None.
        shape_source: What messages call the expected shape (a flag, or the API's parameter).
        dtype_source: What messages call the expected dtype.

    Raises:
        UsageError: one line naming what is wrong.
    """
    with _blame("data"):
        train, val, test = _check_splits(splits, source)
    loaded = Task(name, model.eval(), train, val, test, tuple(train[0][0].shape))
    if input_shape is not None and tuple(input_shape) != loaded.input_shape:
        raise UsageError(
            f"The data's samples have shape {loaded.input_shape} but {shape_source} is "
            f"{tuple(input_shape)}; they must match.",
            "input_shape",
        )
    dtype = dtype_name(loaded.train[0][0].dtype)
    if dtype is None:
        found, accepted = loaded.train[0][0].dtype, list(INPUT_DTYPES)
        raise UsageError(f"The data's inputs have dtype {found}; accepted: {accepted}.", "data")
    if input_dtype is not None and input_dtype != dtype:
        raise UsageError(
            f"The data's samples are {dtype} but {dtype_source} is {input_dtype}; they must match.",
            "input_dtype",
        )
    loaded.input_shape = InputShape(loaded.input_shape, dtype)
    with _blame("model"):
        _check_forward(loaded)
    return loaded


@contextlib.contextmanager
def _blame(field: str) -> Iterator[None]:
    """Marks bad input raised inside as the fault of JobSpec's ``field`` (for job-file messages)."""
    try:
        yield
    except UsageError as exc:
        if exc.field is None:
            exc.field = field
        raise


def build_base_model(source: dict, base_model: nn.Module | None = None) -> nn.Module:
    """An untrained model of the base architecture: ``{"task": name}`` (a built-in task),
    ``{"factory": "pkg.module:factory"}``, or ``{"python": "module.Class"}`` (a model given in
    Python, re-created by copying ``base_model``).

    Raises:
        UsageError: when the factory fails, or a Python model's plan comes without ``base_model``.
    """
    if "python" in source:
        if base_model is None:
            raise UsageError(
                f"This plan is of a model given in Python ({source['python']}); pass an instance of "
                "that class as base_model to rebuild it."
            )
        given = f"{type(base_model).__module__}.{type(base_model).__qualname__}"
        if given != source["python"]:
            raise UsageError(f"This plan is of a {source['python']}; base_model is a {given}.")
        return copy.deepcopy(base_model).eval()
    if "factory" in source:
        network = _call(import_object(source["factory"], "the plan's factory"), source["factory"], "--model")
    else:
        network = get_builtin(source.get("task", DEFAULT_TASK)).model()
    if not isinstance(network, nn.Module):
        raise UsageError(f"The factory {source['factory']!r} must return a torch.nn.Module.")
    return network.eval()


def _call(factory: Callable, path: str, what: str):
    try:
        return factory()
    except Exception as exc:  # noqa: BLE001 - the user's factory failing is bad input
        raise UsageError(
            f"The {what} factory {path!r} raised {type(exc).__name__}: {exc}".rstrip(".") + "."
        ) from exc


def _load_weights(network: nn.Module, path: str) -> None:
    if not Path(path).is_file():
        raise UsageError(f"--weights {path!r} is not a file; expected a checkpoint saved by torch.save.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise UsageError(
            f"Cannot load --weights {path!r} with weights_only=True ({type(exc).__name__}); "
            "expected a state dict of tensors saved by torch.save."
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"--weights {path!r} must hold a state dict. Got {type(state).__name__}.")
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise UsageError(
            f"--weights {path!r} does not fit the model: {' '.join(first[1:3]) or first[0]}"
        ) from exc


def _check_splits(splits: object, source: str) -> tuple[Dataset, Dataset, Dataset]:
    if not isinstance(splits, (tuple, list)) or len(splits) != 3:
        raise UsageError(
            f"The data factory ({source}) must return (train, val, test) datasets. "
            f"Got {type(splits).__name__} instead."
        )
    for name, split in zip(("train", "val", "test"), splits):
        try:
            size = len(split)
            sample = split[0] if size else None
        except Exception as exc:  # noqa: BLE001
            raise UsageError(
                f"The {name} split of {source} is not a dataset of (input, label) pairs "
                f"({type(exc).__name__}: {exc})."
            ) from exc
        if size == 0:
            raise UsageError(f"The {name} split of {source} is empty.")
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            raise UsageError(
                f"The {name} split of {source} must yield (input tensor, label) pairs. "
                f"Got {type(sample).__name__} instead."
            )
        if not isinstance(sample[0], torch.Tensor):
            raise UsageError(
                f"The {name} split of {source} must yield inputs as torch tensors. "
                f"Got {type(sample[0]).__name__} instead."
            )
        label = sample[1]
        if not (
            (isinstance(label, int) and not isinstance(label, bool))
            or (isinstance(label, torch.Tensor) and label.dim() == 0 and not label.is_floating_point())
        ):
            shown = (
                f"a tensor of shape {tuple(label.shape)} and dtype {label.dtype}"
                if isinstance(label, torch.Tensor)
                else type(label).__name__
            )
            raise UsageError(
                f"The {name} split of {source} must yield integer class labels (an int or a 0-d "
                f"integer tensor). Got {shown} instead."
            )
    shapes = {tuple(split[0][0].shape) for split in splits}
    if len(shapes) != 1:
        raise UsageError(f"The splits of {source} have samples of different shapes: {sorted(shapes)}.")
    return tuple(splits)  # type: ignore[return-value]


def _check_forward(task: Task) -> None:
    inputs = torch.stack([task.train[i][0] for i in range(min(2, len(task.train)))])
    try:
        with torch.enable_grad():  # one pass serves the shape checks and the training check
            outputs = task.model.eval()(inputs)
    except Exception as exc:  # noqa: BLE001
        raise UsageError(
            f"The model fails on a batch of the data of shape {tuple(inputs.shape)} "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    if not isinstance(outputs, torch.Tensor) or outputs.dim() != 2:
        shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        raise UsageError(f"The model must return class scores of shape (batch, classes); got {shape}.")
    labels = [int(task.train[i][1]) for i in range(min(64, len(task.train)))]
    if max(labels) >= outputs.shape[1] or min(labels) < 0:
        raise UsageError(
            f"The data's labels reach {max(labels)} but the model outputs {outputs.shape[1]} classes."
        )
    if not any(p.requires_grad for p in task.model.parameters()):
        return
    try:
        loss = nn.functional.cross_entropy(outputs, torch.tensor(labels[: len(inputs)]))
        loss.backward()
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"The model cannot be trained on the data ({type(exc).__name__}: {exc}).") from exc
    finally:
        task.model.zero_grad(set_to_none=True)
