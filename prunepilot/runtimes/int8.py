"""int8 quantization of an ONNX model by ONNX Runtime's quantizer (``onnxruntime.quantization``).

Static quantization in the QDQ format with per-channel int8 weights and uint8 activations, their
ranges calibrated on a few hundred training samples, for models mostly made of convolutions;
dynamic quantization (int8 weights, activation ranges computed per batch at run time) for models
whose weights are mostly in ``Linear`` layers (transformers, MLPs), where it is ONNX Runtime's
recommended mode.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from prunepilot.runtimes.base import DeployError

#: Training samples whose activations set a static quantization's ranges.
CALIBRATION_SAMPLES = 256
#: Samples per calibration batch.
CALIBRATION_BATCH = 64


def uses_dynamic_quantization(model: nn.Module) -> bool:
    """Whether ``model`` holds more weights in ``Linear`` layers than in convolutions."""
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    conv = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd))
    return linear > conv


def quantize_onnx(
    data: bytes, calibration: torch.Tensor | tuple[torch.Tensor, ...], dynamic: bool = False
) -> bytes:
    """``data`` (an ONNX model) quantized to int8; ``calibration`` holds the input samples of a
    static quantization (one batch, split here; a tuple, in the model's inputs' order, for a model
    of several inputs).

    Raises:
        DeployError: naming what the quantizer could not handle.
    """
    import onnxruntime
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnxruntime.set_default_logger_severity(3)  # the quantizer's own sessions warn of what it removes

    with tempfile.TemporaryDirectory() as folder:
        source, prepared, target = (Path(folder) / n for n in ("model.onnx", "pre.onnx", "int8.onnx"))
        source.write_bytes(data)
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=dynamic)
        except Exception:  # noqa: BLE001 - the pre-processing (shape inference, fusions) is optional
            prepared = source

        def quantize(**only: list[str]) -> None:
            if dynamic:
                quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, **only)
            else:
                quantize_static(
                    str(prepared), str(target), _Reader(_input_names(data), calibration),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, **only,
                )  # fmt: skip

        try:
            quantize()
        except Exception as exc:  # noqa: BLE001 - the quantizer's failure is reported as one line
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            culprits = _failing_operators(data, quantize)
            at = (
                f" at its {'/'.join(culprits)} operator{'s' if len(culprits) > 1 else ''}" if culprits else ""
            )
            raise DeployError(
                f"ONNX Runtime cannot quantize the model to int8{at} ({type(exc).__name__}: "
                f"{lines[0][:200] if lines else ''})",
                "quantize",
            ) from exc
        return target.read_bytes()


def _failing_operators(data: bytes, quantize: Callable[..., None]) -> list[str]:
    """The operator types of ``data`` that the quantizer fails on when asked to quantize only them
    (the quantizer's own messages rarely name the operator)."""
    import onnx

    failing = []
    for op_type in sorted({node.op_type for node in onnx.load_from_string(data).graph.node}):
        try:
            quantize(op_types_to_quantize=[op_type])
        except Exception:  # noqa: BLE001 - each failure is a finding
            failing.append(op_type)
    return failing


def _input_names(data: bytes) -> list[str]:
    import onnx

    return [given.name for given in onnx.load_from_string(data).graph.input]


class _Reader:
    """Feeds calibration batches to ``quantize_static`` (its ``CalibrationDataReader`` protocol)."""

    def __init__(self, names: list[str], samples: torch.Tensor | tuple[torch.Tensor, ...]) -> None:
        inputs = samples if isinstance(samples, tuple) else (samples,)
        self._batches: Iterator[tuple[torch.Tensor, ...]] = zip(*(t.split(CALIBRATION_BATCH) for t in inputs))
        self._names = names

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        return None if batch is None else {name: t.numpy() for name, t in zip(self._names, batch)}

    def rewind(self) -> None:  # read once: the MinMax calibration makes one pass
        raise NotImplementedError
