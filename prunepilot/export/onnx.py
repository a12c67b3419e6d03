"""ONNX export, checked in ONNX Runtime on real inputs and timed there."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prunepilot.adapters.several import Inputs, rows, run
from prunepilot.errors import PrunepilotError
from prunepilot.evaluators import LatencySettings
from prunepilot.export._compare import FIXED_BATCH
from prunepilot.inputs import DEFAULT_DTYPE, InputShape, dtype_name, example_batch
from prunepilot.rundir import write_atomically
from prunepilot.runtimes import DeployError
from prunepilot.runtimes.onnx import onnx_bytes, open_session

#: Largest absolute output difference accepted between PyTorch and ONNX Runtime.
ONNX_TOLERANCE = 1e-4


def export_onnx(
    model: nn.Module,
    inputs: Inputs,
    path: Path,
    latency: LatencySettings,
    axes: dict[str, dict[int, str]] | None = None,
) -> dict[str, float]:
    """Exports ``model`` to ONNX (batch dimension dynamic), runs the file in ONNX Runtime on
    ``inputs`` and compares with PyTorch, then times it in ONNX Runtime. The file is written only
    when it reproduces the model. A model of several inputs takes ``inputs`` as a tuple, named and
    freed by ``axes`` (see :func:`~prunepilot.adapters.several.free_axes`); it is timed on real
    inputs.

    Returns:
        ``onnx_max_abs_diff`` and ``onnx_latency_ms`` (median, ``latency``'s batch and threads).

    Raises:
        PrunepilotError: when the export fails or differs by more than :data:`ONNX_TOLERANCE`.
    """
    model = model.eval()
    try:
        data = onnx_bytes(model, rows(inputs, 2), axes)
    except DeployError as exc:
        raise PrunepilotError(f"The ONNX export failed ({exc}).") from exc
    session = open_session(data, latency.threads)
    names = [i.name for i in session.get_inputs()]
    with torch.no_grad():
        expected = run(model, inputs).numpy()
    session.run(None, _feeds(names, rows(inputs, 2)))  # the traced batch runs
    try:
        actual = session.run(None, _feeds(names, inputs))[0]
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own error types
        raise PrunepilotError(f"The ONNX export {FIXED_BATCH}.") from exc
    difference = float(np.abs(expected - actual).max())
    if not difference <= ONNX_TOLERANCE:
        raise PrunepilotError(
            f"The ONNX export does not reproduce the model in ONNX Runtime (max difference "
            f"{difference:.3g} > {ONNX_TOLERANCE:g}); nothing was written to {path}."
        )
    write_atomically(path, data)
    if isinstance(inputs, tuple):
        batch = _feeds(names, rows(inputs, latency.batch_size))
    else:
        shape = InputShape(inputs.shape[1:], dtype_name(inputs.dtype) or DEFAULT_DTYPE)
        batch = _feeds(names, example_batch(shape, latency.batch_size))
    for _ in range(latency.warmup):
        session.run(None, batch)
    times = []
    for _ in range(latency.repeats):
        start = time.perf_counter()
        session.run(None, batch)
        times.append(time.perf_counter() - start)
    return {"onnx_max_abs_diff": difference, "onnx_latency_ms": statistics.median(times) * 1e3}


def _feeds(names: list[str], inputs: Inputs) -> dict[str, np.ndarray]:
    tensors = inputs if isinstance(inputs, tuple) else (inputs,)
    return {name: tensor.numpy() for name, tensor in zip(names, tensors)}
