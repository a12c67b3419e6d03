"""Exports that are reloaded and checked before anyone ships them: TorchScript, ONNX (run in ONNX
Runtime) and the plan (re-created from the model's own class)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from prunepilot.adapters import LogitsModel, NamedInputs, samples
from prunepilot.adapters.several import free_axes, rows
from prunepilot.errors import PrunepilotError, first_line
from prunepilot.evaluators import measure_latency
from prunepilot.export.int8 import export_int8
from prunepilot.export.onnx import export_onnx
from prunepilot.export.plan import build_from_plan, export_plan, load_plan
from prunepilot.export.torchscript import export_torchscript, load_torchscript
from prunepilot.families.features import KeptFeatures
from prunepilot.inputs import InputShape, dtype_of
from prunepilot.policies import Plan
from prunepilot.runtimes import Deployed
from prunepilot.tasks.base import Task
from prunepilot.trial import TrialSettings

__all__ = [
    "EXPORT_FORMATS",
    "build_from_plan",
    "export_all",
    "export_errors",
    "export_onnx",
    "export_plan",
    "export_torchscript",
    "load_plan",
    "load_torchscript",
]

#: Export formats (``prunepilot export --format``) and the files each writes.
EXPORT_FORMATS = {
    "torchscript": ("model.ts.pt",),
    "onnx": ("model.onnx",),
    "plan": ("plan.json", "weights.pt"),
    "int8": ("model.int8.onnx",),
}


def export_all(
    model: nn.Module,
    plan: Plan,
    source: dict[str, str],
    task: Task,
    settings: TrialSettings,
    folder: Path,
    formats: tuple[str, ...] = tuple(EXPORT_FORMATS),
    deployed: Deployed | None = None,
) -> dict[str, Any]:
    """Exports ``model`` in ``formats`` into ``folder``; each export is reloaded (or run in its
    runtime), compared with the model on test inputs and timed there.

    Args:
        model: The final model.
        plan: What its policy removed (for the plan export).
        source: Where the base model's class comes from: ``{"task": name}``, ``{"factory": path}``
            or, for a model given in Python, ``{"python": "module.Class"}`` (re-created from
            ``task.model``).
        task: The task (test inputs for the checks, the input shape).
        settings: The trial settings (how latency is timed).
        folder: Where the files go.
        formats: Keys of :data:`EXPORT_FORMATS` (``int8`` applies to a model ``deployed`` in int8
            only).
        deployed: The model as it ran in the job's runtime; an int8 one is exported as it was
            measured (see :func:`export_int8`).

    Returns:
        The ``export`` entry of the report.

    A model cut to some input features is exported without its wrapper: the files take the kept
    features only (``export["input_features"]``, in that order; ``plan.json`` lists them too). A
    model of several inputs ships taking them by name (``export["inputs"]``; the ONNX file's inputs
    bear those names, with free batch and sequence dimensions), and is timed on test inputs. A
    structured output ships packed (``export["outputs"]`` says where each tensor lies).
    """
    inputs = samples(task.test, 64)
    export: dict[str, Any] = {"policy": "policy.json"}
    shape = task.input_shape
    if isinstance(model, KeptFeatures):  # what ships takes the kept input features only
        export["input_features"] = list(model.kept)
        inputs, shape = inputs.index_select(-1, model.index), InputShape((len(model.kept),), dtype_of(shape))
        model = model.inner
    shipped, shipped_inputs, axes = model, inputs, None
    if isinstance(model, LogitsModel) and model.inputs is not None:  # what ships takes them by name
        several = model.inputs
        export["inputs"] = several.to_dict()
        shipped = NamedInputs(model.model, several, model.output_key, model.outputs)
        shipped_inputs, axes = tuple(several.unpack(inputs)), free_axes(several)
    else:
        export["input_shape"] = list(shape)
    if isinstance(model, LogitsModel) and model.outputs is not None:  # what the packed output holds
        export["outputs"] = model.outputs.to_dict()
    timed = rows(shipped_inputs, settings.latency.batch_size) if axes else None
    if "torchscript" in formats:
        with _or_its_error(export, "torchscript", folder / "model.ts.pt"):
            difference = export_torchscript(shipped, shipped_inputs, folder / "model.ts.pt")
            scripted = load_torchscript(folder / "model.ts.pt")
            latency = measure_latency(scripted, shape, settings.latency, inputs=timed)
            export.update(torchscript="model.ts.pt", torchscript_max_abs_diff=difference,
                          torchscript_latency_ms=latency)  # fmt: skip
    if "onnx" in formats:
        with _or_its_error(export, "onnx", folder / "model.onnx"):
            export.update(export_onnx(shipped, shipped_inputs, folder / "model.onnx", settings.latency, axes))
            export["onnx"] = "model.onnx"
    if "plan" in formats:
        export["plan"], export["plan_weights"] = "plan.json", "weights.pt"
        base = task.model if "python" in source else None  # no factory re-creates a Python object
        export["plan_max_abs_diff"] = export_plan(model, plan, source, task.input_shape, inputs, folder, base)
    if "int8" in formats and deployed is not None and deployed.quantized:
        export.update(export_int8(model, deployed, task, settings, folder / "model.int8.onnx"))
    return export


@contextlib.contextmanager
def _or_its_error(export: dict[str, Any], name: str, path: Path) -> Iterator[None]:
    """Runs one format's export; when it fails (an exporter that cannot handle the model, a trace
    that fixed the batch size), its file is removed and ``export[name + "_error"]`` says why, one
    line, so the other formats still ship (the plan always re-creates the model)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - an exporter's failure is the format's, reported in one line
        path.unlink(missing_ok=True)
        own = isinstance(exc, PrunepilotError)  # worded for the user already
        export[f"{name}_error"] = first_line(exc) if own else f"{type(exc).__name__}: {first_line(exc)}"


def export_errors(export: dict[str, Any]) -> list[str]:
    """``format: why`` of each format whose export failed (see :func:`export_all`)."""
    return [f"{key[: -len('_error')]}: {value}" for key, value in export.items() if key.endswith("_error")]
