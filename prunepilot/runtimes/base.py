"""The runtime interface: one small base class, what it returns, and the error it raises."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from prunepilot.errors import UsageError
from prunepilot.evaluators.cost import compressed_size, state_dict_bytes

#: ``--quantize`` choices: never, always (int8), or chosen by the search per policy.
QUANTIZE_MODES = ("none", "int8", "search")
#: How a model's size is counted: the bytes saved, or those bytes compressed with zlib (where
#: zeroed weights count).
SIZE_MEASURES = ("saved", "zlib")


class DeployError(UsageError):
    """A model the runtime cannot take (an operator its exporter or quantizer does not handle)."""


@dataclass(frozen=True)
class Deployed:
    """A model as it runs in a runtime.

    Attributes:
        module: Called like the PyTorch model (a batch of inputs -> its output tensor); timed and
            scored in place of the model.
        quantized: Whether it runs in int8.
        fallback: Why int8 was asked for but the model runs in fp32; None otherwise.
        data: The serialized model (ONNX bytes); None for PyTorch.
        size_measure: One of :data:`SIZE_MEASURES`: how :attr:`size_bytes` counts.
    """

    module: nn.Module
    quantized: bool = False
    fallback: str | None = None
    data: bytes | None = None
    size_measure: str = "saved"

    @property
    def size_bytes(self) -> int:
        """Bytes of what ships: the serialized model (int8 weights as stored), else the module's
        saved state dict (computed when asked: a reference model's size is never needed); with the
        ``zlib`` measure, those bytes compressed."""
        data = self.data if self.data is not None else state_dict_bytes(self.module)
        return compressed_size(data) if self.size_measure == "zlib" else len(data)


class Runtime(abc.ABC):
    """Where the model will run: every latency and every score of a run is measured there.

    A subclass keeps these rules:

    - :meth:`deploy` leaves ``model`` unchanged and returns a :class:`Deployed` whose module maps
      a batch of inputs (as the model takes them) to the model's output tensor.
    - A model the runtime cannot take raises :class:`DeployError`, one line naming the operator.
    - ``int8`` is honoured or refused: a runtime without int8 (``supports_int8`` False) raises
      ``ValueError`` when asked; a model it cannot quantize raises :class:`DeployError`.
    - Instances hold settings only (they travel to Ray workers) and are cheap to build.
    """

    name: ClassVar[str]
    supports_int8: ClassVar[bool] = False

    @abc.abstractmethod
    def deploy(
        self,
        model: nn.Module,
        example: torch.Tensor,
        threads: int,
        int8: bool = False,
        calibration: torch.Tensor | None = None,
    ) -> Deployed:
        """``model`` as it runs here.

        Args:
            model: The PyTorch model (in eval mode while exported; not changed).
            example: A batch of inputs (its shape and dtype; the batch size stays free).
            threads: Intra-op threads the runtime runs with.
            int8: Quantize the model to int8.
            calibration: Input samples that set the int8 activation ranges (training data).
        """

    def deploy_or_fp32(
        self,
        model: nn.Module,
        example: torch.Tensor,
        threads: int,
        int8: bool,
        calibration: torch.Tensor | None = None,
    ) -> Deployed:
        """:meth:`deploy`, falling back to fp32 (the reason in ``fallback``) when ``model`` cannot be
        quantized; a model that cannot run here at all still raises."""
        if not int8:
            return self.deploy(model, example, threads)
        try:
            return self.deploy(model, example, threads, True, calibration)
        except DeployError as exc:
            plain = self.deploy(model, example, threads)
            return Deployed(plain.module, False, str(exc), plain.data)
