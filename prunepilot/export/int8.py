"""The int8 ONNX export: the quantized model that was measured, written, reloaded and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunepilot.errors import PrunepilotError
from prunepilot.evaluators import LatencySettings, time_models
from prunepilot.evaluators.metric import evaluate_metric
from prunepilot.rundir import write_atomically
from prunepilot.runtimes import Deployed
from prunepilot.runtimes.onnx import OnnxModule
from prunepilot.tasks.base import Task
from prunepilot.trial import TrialSettings, deploy

#: Largest absolute output difference accepted between the reloaded file and the model measured.
RELOAD_TOLERANCE = 1e-5


def export_int8(
    model: nn.Module, deployed: Deployed, task: Task, settings: TrialSettings, path: Path
) -> dict[str, Any]:
    """Writes ``deployed`` (``model`` quantized to int8, as the run measured it) to ``path``, then
    reloads the file in a new ONNX Runtime session and checks that it reproduces the model measured.

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
    reloaded = OnnxModule(deployed.data, settings.latency.threads)
    with torch.inference_mode():
        measured, again = deployed.module(inputs), reloaded(inputs)
        fp32_outputs = model.eval()(inputs)
    difference = float((measured - again).abs().max())
    if not difference <= RELOAD_TOLERANCE:
        raise PrunepilotError(
            f"The int8 ONNX model does not reproduce itself when reloaded (max difference {difference:.3g}"
            f" > {RELOAD_TOLERANCE:g}); nothing was written to {path}."
        )
    write_atomically(path, deployed.data)
    from_file = OnnxModule(path.read_bytes(), settings.latency.threads)
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


def _test_inputs(task: Task) -> torch.Tensor:
    from prunepilot.adapters import samples

    return samples(task.test, 64)
