"""ONNX Runtime: the model exported to ONNX in memory and run in an ONNX Runtime session on the CPU,
in fp32 or quantized to int8 by ONNX Runtime's own quantizer (see :mod:`prunepilot.runtimes.int8`)."""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

import torch
from torch import nn

from prunepilot.errors import first_line
from prunepilot.runtimes.base import Deployed, DeployError, Runtime
from prunepilot.runtimes.int8 import quantize_onnx, uses_dynamic_quantization

INPUT_NAME = "input"
OUTPUT_NAME = "output"


def onnx_bytes(
    model: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    axes: dict[str, dict[int, str]] | None = None,
) -> bytes:
    """``model`` (on the CPU, in eval mode) exported to ONNX with a free batch dimension.

    ``example`` is one tensor (the input ``input``) or, for a model of several inputs, a tuple and
    ``axes`` (input name -> its free dimensions, in the model's order: the inputs' names).

    The TorchScript-based exporter comes first (about 50 ms a small model, against seconds for
    ``torch.export``'s, which matters when every trial and calibration policy is exported); a model
    it cannot export is tried with ``torch.export``'s.

    Raises:
        DeployError: naming what neither exporter handles (its first message).
    """
    model.eval()
    args = example if isinstance(example, tuple) else (example,)
    free = axes or {INPUT_NAME: {0: "batch"}}
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                buffer = io.BytesIO()
                torch.onnx.export(
                    model, args, buffer, dynamo=False, input_names=list(free), output_names=[OUTPUT_NAME],
                    dynamic_axes={**free, OUTPUT_NAME: {0: "batch"}},
                )  # fmt: skip
                return buffer.getvalue()
            except Exception as first:  # noqa: BLE001 - the second exporter may handle it
                try:
                    named = {name for axis in free.values() for name in axis.values()}
                    dims = {name: torch.export.Dim(name, min=1) for name in named}
                    program = torch.onnx.export(
                        model, args, dynamo=True, verbose=False, input_names=list(free),
                        dynamic_shapes=tuple({i: dims[n] for i, n in axis.items()} for axis in free.values()),
                    )  # fmt: skip
                    return program.model_proto.SerializeToString()
                except Exception:  # noqa: BLE001 - the first exporter's message names the operator
                    raise DeployError(
                        f"ONNX cannot export the model: {_first_line(first)}", "runtime"
                    ) from first
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


class OnnxModule(nn.Module):
    """An ONNX model in an ONNX Runtime session, called like the PyTorch model it came from.

    Picklable: the session is made on first use from the model's bytes.

    Attributes:
        data: The ONNX model.
        threads: The session's intra-op threads.
    """

    def __init__(self, data: bytes, threads: int) -> None:
        super().__init__()
        self.data = data
        self.threads = threads
        self._session: Any = None

    def session(self) -> Any:
        """The ONNX Runtime session (made once)."""
        if self._session is None:
            self._session = open_session(self.data, self.threads)
        return self._session

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The model's output on ``inputs``, given in the order of the ONNX model's inputs."""
        session = self.session()
        feeds = {given.name: t.detach().cpu().numpy() for given, t in zip(session.get_inputs(), inputs)}
        return torch.from_numpy(session.run(None, feeds)[0]).to(inputs[0].device)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_session"] = None
        return state


def open_session(data: bytes, threads: int) -> Any:
    """An ONNX Runtime CPU session of ``data`` with ``threads`` intra-op threads and one inter-op
    thread (the job's measurement threads).

    Raises:
        DeployError: when ONNX Runtime cannot load the model.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # its errors are raised, not printed
    try:
        return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a model ONNX Runtime cannot load is reported as one line
        raise DeployError(f"ONNX Runtime cannot load the model: {_first_line(exc)}", "runtime") from exc


class OnnxRuntime(Runtime):
    """ONNX Runtime on the CPU (``CPUExecutionProvider``), fp32 or int8; the size of a model is its
    ONNX file's."""

    name = "onnxruntime"
    supports_int8 = True

    def deploy(
        self,
        model: nn.Module,
        example: torch.Tensor,
        threads: int,
        int8: bool = False,
        calibration: torch.Tensor | None = None,
    ) -> Deployed:
        data = onnx_bytes(model, example[:2].cpu())
        if int8:
            samples = example if calibration is None else calibration
            data = quantize_onnx(data, samples.cpu(), dynamic=uses_dynamic_quantization(model))
        module = OnnxModule(data, threads)
        module(example[:1].cpu())  # a model the session cannot load or run fails here, as one line
        return Deployed(module, int8, None, data)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"
