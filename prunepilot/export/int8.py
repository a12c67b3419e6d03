"""The int8 ONNX export: the quantized model that was measured, written, reloaded and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunepilot.adapters import LogitsModel, NamedInputs, samples
from prunepilot.adapters.several import ModelInputs, free_axes
from prunepilot.errors import PrunepilotError
from prunepilot.evaluators import LatencySettings, time_models
from prunepilot.evaluators.metric import evaluate_metric
from prunepilot.rundir import write_atomically
from prunepilot.runtimes import Deployed
from prunepilot.runtimes.int8 import CALIBRATION_SAMPLES, quantize_onnx, uses_dynamic_quantization
from prunepilot.runtimes.onnx import OnnxModule, onnx_bytes
from prunepilot.tasks.base import Task
from prunepilot.trial import TrialSettings, deploy

#: Largest absolute output difference accepted between the reloaded file and the model measured.
RELOAD_TOLERANCE = 1e-5


def export_int8(
    model: nn.Module, deployed: Deployed, task: Task, settings: TrialSettings, path: Path
) -> dict[str, Any]:
    """Writes ``deployed`` (``model`` quantized to int8, as the run measured it) to ``path``, then
    reloads the file in a new ONNX Runtime session and checks that it reproduces the model measured.
    A model of several inputs ships taking them by name: it is exported so and quantized as the run
    quantized it, and must reproduce the int8 model measured (which took them packed).

    Returns:
        ``int8_onnx`` (the file name), ``int8_max_abs_diff`` (the int8 model's largest output
        difference from the fp32 PyTorch model on test inputs), ``int8_test_accuracy`` and
        ``fp32_onnx_test_accuracy`` (the job's metric on the test split, int8 beside fp32 in ONNX
        Runtime), ``int8_latency_ms`` and ``fp32_onnx_latency_ms`` (timed side by side there).

    Raises:
        PrunepilotError: when the reloaded file differs from the model measured (nothing written).
    """
    if deployed.data is None or not deployed.quantized:
        raise ValueError("export_int8 takes a model deployed in int8 by an ONNX runtime.")
    inputs = _test_inputs(task)
    several = model.inputs if isinstance(model, LogitsModel) else None
    data = deployed.data if several is None else _named_int8(model, several, task)
    reloaded = _Packed(OnnxModule(data, settings.latency.threads), several)
    with torch.inference_mode():
        measured, again = deployed.module(inputs), reloaded(inputs)
        fp32_outputs = model.eval()(inputs)
    difference = float((measured - again).abs().max())
    if not difference <= RELOAD_TOLERANCE:
        what = "reloaded" if several is None else "taking its inputs by name"
        raise PrunepilotError(
            f"The int8 ONNX model {what} does not reproduce the int8 model measured (max difference "
            f"{difference:.3g} > {RELOAD_TOLERANCE:g}); nothing was written to {path}."
        )
    write_atomically(path, data)
    from_file = _Packed(OnnxModule(path.read_bytes(), settings.latency.threads), several)
    fp32 = deploy(model, task.train, task.input_shape, settings)
    latency = LatencySettings(**{**settings.latency.to_dict(), "repeats": 3 * settings.latency.repeats})
    int8_ms, fp32_ms = time_models([from_file, fp32.module], task.input_shape, latency)
    return {
        "int8_onnx": path.name,
        "int8_max_abs_diff": float((from_file(inputs) - fp32_outputs).abs().max()),
        "int8_test_accuracy": evaluate_metric(from_file, task.test, settings.metric),
        "fp32_onnx_test_accuracy": evaluate_metric(fp32.module, task.test, settings.metric),
        "int8_latency_ms": int8_ms,
        "fp32_onnx_latency_ms": fp32_ms,
    }


def _named_int8(model: LogitsModel, several: ModelInputs, task: Task) -> bytes:
    """``model`` exported taking its inputs by name (as the fp32 ONNX file does) and quantized as
    the run quantized it, calibrated on the same training samples."""
    named = NamedInputs(model.model, several, model.output_key, model.outputs).eval()
    example = tuple(several.unpack(_test_inputs(task)[:2]))
    calibration = tuple(several.unpack(samples(task.train, CALIBRATION_SAMPLES)))
    data = onnx_bytes(named, example, free_axes(several))
    return quantize_onnx(data, calibration, dynamic=uses_dynamic_quantization(model))


class _Packed(nn.Module):
    """An ONNX model of several named inputs, called with them packed in one tensor (as the run's
    scoring and timing call every model); ``inputs`` None: the model itself."""

    def __init__(self, module: nn.Module, inputs: ModelInputs | None) -> None:
        super().__init__()
        self.module, self.inputs = module, inputs

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.module(packed) if self.inputs is None else self.module(*self.inputs.unpack(packed))


def _test_inputs(task: Task) -> torch.Tensor:
    return samples(task.test, 64)
