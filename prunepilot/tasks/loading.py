"""Loading a user's model and data from import paths (``pkg.module:factory``), with clear errors."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from prunepilot.adapters import (
    DEFAULT_LABEL_KEYS,
    Batch,
    BatchFormat,
    LogitsModel,
    Loss,
    Split,
    as_logits_model,
    first_batch,
    first_raw_batch,
    logits_of,
    user_model,
)
from prunepilot.adapters.several import ModelInputs, forward_inputs
from prunepilot.adapters.structured import OutputLayout
from prunepilot.errors import UsageError
from prunepilot.evaluators.metric import Metric
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
    **reading: object,
) -> Task:
    """A built-in task (``task``), or the user's model and data, checked to work together.

    ``reading`` is passed to :func:`checked_task` (``batch_format``, ``output_key``, ``loss``).

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
            model, network, splits, data or "the built-in digits data", input_shape, input_dtype, **reading
        )
    return checked_task(loaded.name, loaded.model, (loaded.train, loaded.val, loaded.test), task,
                        input_shape, input_dtype, **reading)  # fmt: skip


def checked_task(
    name: str,
    model: nn.Module,
    splits: object,
    source: str,
    input_shape: tuple[int, ...] | None = None,
    input_dtype: str | None = None,
    shape_source: str = "--input-shape",
    dtype_source: str = "--input-dtype",
    *,
    batch_format: BatchFormat | None = None,
    output_key: str | None = None,
    loss: Loss | None = None,
    input_keys: Sequence[str] | None = None,
    metric: Metric | None = None,
) -> Task:
    """A task of ``model`` and its (train, val, test) ``splits``, checked to work together: each
    split is a Dataset or a DataLoader whose batches (tensors, tuples or dicts, read through
    ``batch_format``) hold inputs of one shape and integer class labels, the shape and dtype are
    those given (when given), and the model runs on a batch, its output holds class scores (read
    through ``output_key``) and it trains on ``loss``.

    Args:
        name: What reports call the task.
        model: The model to prune (wrapped in a :class:`~prunepilot.adapters.LogitsModel` when its
            output is not the tensor of class scores).
        splits: (train, val, test) Datasets or DataLoaders.
        source: Where the splits come from, for messages.
        input_shape: One sample's expected shape, or None.
        input_dtype: One sample's expected dtype name, or None.
        shape_source: What messages call the expected shape (a flag, or the API's parameter).
        dtype_source: What messages call the expected dtype.
        batch_format: Where dict batches keep the input and the labels.
        output_key: Where the model's output keeps the class scores.
        loss: What fine-tuning minimises (checked on one batch).
        input_keys: The model's inputs in dict batches, where its ``forward``'s signature does not
            say (see :func:`~prunepilot.adapters.several.forward_inputs`).
        metric: What scores the model. With a loss and a metric of the user's, the outputs and
            labels may be anything they read (per-pixel scores and masks); else the model must
            output class scores, one row a sample, and the labels be classes.

    Raises:
        UsageError: one line naming what is wrong.
    """
    with _blame("data"):
        batch_format = _several_inputs(model, splits, source, batch_format or BatchFormat(), input_keys)
        own = all(given is not None and given.function is not None for given in (loss, metric))
        train, val, test = _check_splits(splits, source, batch_format, own)
        first = first_batch(train, 2)
    several = batch_format.inputs
    if several is not None and input_shape is not None:
        raise UsageError(
            f"{shape_source} gives one input's shape, but the model takes the inputs {list(several.names)} "
            f"(shapes {[list(s) for s in several.shapes]}, read from the data); leave it out.",
            "input_shape",
        )
    shape = tuple(first[0].shape[1:])
    if input_shape is not None and tuple(input_shape) != shape:
        raise UsageError(
            f"The data's samples have shape {shape} but {shape_source} is "
            f"{tuple(input_shape)}; they must match.",
            "input_shape",
        )
    dtype = dtype_name(first[0].dtype)
    if dtype is None:
        found, accepted = first[0].dtype, list(INPUT_DTYPES)
        raise UsageError(f"The data's inputs have dtype {found}; accepted: {accepted}.", "data")
    if input_dtype is not None and input_dtype != dtype:
        raise UsageError(
            f"The data's samples are {dtype} but {dtype_source} is {input_dtype}; they must match.",
            "input_dtype",
        )
    with _blame("model"):
        outputs = _forward(model.eval(), first[0], several)  # one pass: the wrapping and the checks
        model = as_logits_model(model, outputs, output_key, several, structured=own)
        layout = getattr(model, "outputs", None)  # a structured output, packed
        scores = logits_of(outputs, output_key) if layout is None else layout.pack(outputs)
    class_scores = not own or (layout is None and _holds_classes(scores, first[1]))
    loaded = Task(name, model, train, val, test, InputShape(shape, dtype, several), class_scores=class_scores)
    with _blame("model"):
        _check_forward(loaded, first, scores, loss or Loss())
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
    Python, re-created by copying ``base_model``); in a :class:`~prunepilot.adapters.LogitsModel`
    when ``source`` says its class scores are read from its output (``logits_model``).

    Raises:
        UsageError: when the factory fails, or a Python model's plan comes without ``base_model``.
    """
    if "python" in source:
        if base_model is None:
            raise UsageError(
                f"This plan is of a model given in Python ({source['python']}); pass an instance of "
                "that class as base_model to rebuild it."
            )
        own = user_model(base_model)
        given = f"{type(own).__module__}.{type(own).__qualname__}"
        if given != source["python"]:
            raise UsageError(f"This plan is of a {source['python']}; base_model is a {given}.")
        network = copy.deepcopy(own)
    elif "factory" in source:
        network = _call(import_object(source["factory"], "the plan's factory"), source["factory"], "--model")
    else:
        network = get_builtin(source.get("task", DEFAULT_TASK)).model()
    if not isinstance(network, nn.Module):
        raise UsageError(f"The factory {source['factory']!r} must return a torch.nn.Module.")
    if source.get("logits_model"):
        several = ModelInputs.from_dict(source["inputs"]) if source.get("inputs") else None
        packed = OutputLayout.from_dict(source["outputs"]) if source.get("outputs") else None
        network = LogitsModel(network, source.get("output_key"), several, packed)
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
        with warnings.catch_warnings():  # torch's notes on a foreign pickle: the error below says it
            warnings.simplefilter("ignore")
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


def _check_splits(
    splits: object, source: str, batch_format: BatchFormat, any_labels: bool = False
) -> tuple[Split, Split, Split]:
    if not isinstance(splits, (tuple, list)) or len(splits) != 3:
        raise UsageError(
            f"The data factory ({source}) must return (train, val, test) datasets or data loaders. "
            f"Got {type(splits).__name__} instead."
        )
    checked, shapes = [], set()
    for name, data in zip(("train", "val", "test"), splits):
        if isinstance(data, Split) and batch_format.inputs is not None:  # read the several inputs
            data = data.source
        split = data if isinstance(data, Split) else Split(data, batch_format)
        try:
            inputs, labels = first_batch(split, 2)
        except UsageError as exc:
            raise UsageError(f"The {name} split of {source}: {exc}", exc.field) from None
        except Exception as exc:  # noqa: BLE001
            raise UsageError(
                f"The {name} split of {source} is not a dataset or data loader of (input, label) "
                f"batches ({type(exc).__name__}: {exc})."
            ) from exc
        if not any_labels and (labels.is_floating_point() or labels.dim() != 1 or len(labels) != len(inputs)):
            raise UsageError(
                f"The {name} split of {source} must yield integer class labels, one number per sample, "
                f"or come with a loss and a metric of yours, which make any labels and outputs searchable. "
                f"Got {labels.dtype} labels of shape {tuple(labels.shape[1:])} per sample instead."
            )
        free = batch_format.inputs is not None and batch_format.inputs.free_sequence
        shapes.add(tuple(inputs.shape[1:-1] if free else inputs.shape[1:]))  # lengths may differ
        checked.append(split)
    if len(shapes) != 1:
        raise UsageError(f"The splits of {source} have samples of different shapes: {sorted(shapes)}.")
    return tuple(checked)  # type: ignore[return-value]


def _holds_classes(outputs: object, labels: torch.Tensor) -> bool:
    """Whether ``outputs`` are class scores ``(batch, classes)`` and ``labels`` classes, one a sample
    (what the default loss, metric and data checks read)."""
    return (isinstance(outputs, torch.Tensor) and outputs.dim() == 2 and labels.dim() == 1
            and not labels.is_floating_point() and len(labels) == len(outputs))  # fmt: skip


def _check_class_scores(task: Task, outputs: object) -> None:
    if not isinstance(outputs, torch.Tensor) or outputs.dim() != 2:
        shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        raise UsageError(
            f"The model must return class scores of shape (batch, classes); got {shape} (set output_key "
            "to the part of the output that holds them, or give a loss and a metric of yours, which make "
            "any output searchable)."
        )
    labels = first_batch(task.train, 64)[1]
    if int(labels.max()) >= outputs.shape[1] or int(labels.min()) < 0:
        raise UsageError(
            f"The data's labels reach {int(labels.max())} but the model outputs {outputs.shape[1]} classes."
        )


def _forward(model: nn.Module, inputs: torch.Tensor, several: ModelInputs | None) -> object:
    try:
        with torch.no_grad():
            return model(inputs) if several is None else several.call(model, several.unpack(inputs))
    except Exception as exc:  # noqa: BLE001 - the user's model failing is bad input
        shown = tuple(inputs.shape) if several is None else dict(zip(several.names, several.shapes))
        raise UsageError(
            f"The model fails on a batch of the data of shape {shown} ({type(exc).__name__}: {exc})."
        ) from exc


def _several_inputs(
    model: nn.Module, splits: object, source: str, batch_format: BatchFormat, input_keys: Sequence[str] | None
) -> BatchFormat:
    """``batch_format`` reading the model's several inputs, when it takes several from the first
    training batch (see :func:`~prunepilot.adapters.several.forward_inputs`); an ``input_key`` set
    without ``input_keys`` keeps one input."""
    if input_keys is not None and len(input_keys) == 1:  # one input, named
        return dataclasses.replace(batch_format, input_key=input_keys[0])
    if batch_format.input_key is not None and not input_keys:
        return batch_format
    if not isinstance(splits, (tuple, list)) or not splits:
        return batch_format
    train = splits[0].source if isinstance(splits[0], Split) else splits[0]
    try:
        raw = first_raw_batch(train, 2)
    except Exception:  # noqa: BLE001 - the splits' own check says what is wrong with them
        return batch_format
    keys = raw if isinstance(raw, Mapping) else {}
    labels = batch_format.label_key or next((k for k in DEFAULT_LABEL_KEYS if k in keys), None)
    several = forward_inputs(model, raw, labels, input_keys)
    if several is None:
        if input_keys:
            raise UsageError(f"input_keys names {list(input_keys)}, but the data of {source} gives the model "
                             "one input; leave it out.", "input_keys")  # fmt: skip
        return batch_format
    return dataclasses.replace(batch_format, inputs=several)


def _check_forward(task: Task, first: Batch, outputs: object, loss: Loss) -> None:
    """Checks the class scores ``outputs`` of the first batch against its labels (unless the user's
    loss and metric read the outputs), and that the model trains on ``loss``."""
    if task.class_scores:
        _check_class_scores(task, outputs)
    if not any(p.requires_grad for p in task.model.parameters()):
        return
    try:
        loss.bind()(task.model, first, "cpu").backward()
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UsageError(
            f"The model cannot be trained on the data with the loss {loss.name!r} "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    finally:
        task.model.zero_grad(set_to_none=True)
