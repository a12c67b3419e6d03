"""ONNX export, checked in ONNX Runtime on real inputs and timed there."""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prunepilot.errors import PrunepilotError
from prunepilot.evaluators import LatencySettings
from prunepilot.inputs import DEFAULT_DTYPE, InputShape, dtype_name, example_batch
from prunepilot.rundir import write_atomically

#: Largest absolute output difference accepted between PyTorch and ONNX Runtime.
ONNX_TOLERANCE = 1e-4


def export_onnx(
    model: nn.Module, inputs: torch.Tensor, path: Path, latency: LatencySettings
) -> dict[str, float]:
    """Exports ``model`` to ONNX (batch dimension dynamic), runs the file in ONNX Runtime on
    ``inputs`` and compares with PyTorch, then times it in ONNX Runtime. The file is written only
    when it reproduces the model.

    Returns:
        ``onnx_max_abs_diff`` and ``onnx_latency_ms`` (median, ``latency``'s batch and threads).

    Raises:
        PrunepilotError: when the export fails or differs by more than :data:`ONNX_TOLERANCE`.
    """
    import onnxruntime

    model = model.eval()
    with tempfile.TemporaryDirectory() as folder:
        staged = Path(folder) / "model.onnx"
        try:
            _export(model, inputs[:2], staged)
        except Exception as exc:  # noqa: BLE001 - any exporter failure is reported as one line
            raise PrunepilotError(f"The ONNX export failed ({type(exc).__name__}: {exc}).") from exc
        data = staged.read_bytes()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = latency.threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    with torch.no_grad():
        expected = model(inputs).numpy()
    actual = session.run(None, {name: inputs.numpy()})[0]
    difference = float(np.abs(expected - actual).max())
    if not difference <= ONNX_TOLERANCE:
        raise PrunepilotError(
            f"The ONNX export does not reproduce the model in ONNX Runtime (max difference "
            f"{difference:.3g} > {ONNX_TOLERANCE:g}); nothing was written to {path}."
        )
    write_atomically(path, data)
    shape = InputShape(inputs.shape[1:], dtype_name(inputs.dtype) or DEFAULT_DTYPE)
    batch = example_batch(shape, latency.batch_size).numpy()
    for _ in range(latency.warmup):
        session.run(None, {name: batch})
    times = []
    for _ in range(latency.repeats):
        start = time.perf_counter()
        session.run(None, {name: batch})
        times.append(time.perf_counter() - start)
    return {"onnx_max_abs_diff": difference, "onnx_latency_ms": statistics.median(times) * 1e3}


def _export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = torch.export.Dim("batch", min=1)
            program = torch.onnx.export(
                model, (example,), dynamo=True, dynamic_shapes=({0: batch},), verbose=False
            )
            program.save(str(path))
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
