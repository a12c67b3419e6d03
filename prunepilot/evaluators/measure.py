"""Every metric of one model in one call: accuracy, FLOPs, parameters, size, latency."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from prunepilot.evaluators.cost import count_flops, count_params, serialized_size
from prunepilot.evaluators.latency import LatencySettings, measure_latency, relative_latency
from prunepilot.evaluators.metric import Metric, evaluate_metric
from prunepilot.gate import NullGate
from prunepilot.inputs import example_batch


class Shipped(Protocol):
    """A model as it runs where it ships (``prunepilot.runtimes.Deployed`` is one)."""

    module: nn.Module
    size_bytes: int


@dataclass(frozen=True)
class Measurements:
    """What prunepilot measures of a model (plain data).

    Attributes:
        accuracy: The job's metric (top-1 accuracy unless the job names another) on the dataset
            it was evaluated on; the name is kept for the report's schema.
        flops: FLOPs of one sample's forward pass.
        params: Number of parameters.
        size_bytes: Size of what ships: the saved state dict, or the runtime's file (int8 weights
            as stored).
        latency_ms: Median latency of one batch (see :class:`LatencySettings`) in the runtime.
    """

    accuracy: float
    flops: int
    params: int
    size_bytes: int
    latency_ms: float

    def cost(self, name: str) -> float:
        """The value of a cost a budget may bound, by name (``latency_ms``, ``flops`` ...)."""
        return float(getattr(self, name))

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    input_shape: tuple[int, ...],
    latency: LatencySettings,
    timings: dict[str, float] | None = None,
    device: str | torch.device = "cpu",
    gate: NullGate | None = None,
    reference: tuple[nn.Module, float] | None = None,
    metric: Metric | None = None,
    deployed: Shipped | None = None,
) -> Measurements:
    """Measures ``model``; records ``evaluation`` and ``latency`` wall seconds in ``timings``.

    With ``deployed`` (``model`` as it runs in the job's runtime), the metric, the latency and the
    size are those of what ships; FLOPs and parameters are counted on ``model``. With
    ``reference`` (a model in the same runtime and its known latency in ms), latency is measured
    relative to the reference model, timed alongside, and scaled by the known latency: drift of
    the machine's speed between this measurement and the reference's cancels out.
    """
    timings = {} if timings is None else timings
    shipped = model if deployed is None else deployed.module
    start = time.perf_counter()
    accuracy = evaluate_metric(shipped, dataset, metric, device=device, gate=gate)
    sample = example_batch(input_shape, 1, device)
    with (gate or NullGate()).compute():
        flops = count_flops(model, sample)
        params = count_params(model)
        size = serialized_size(model) if deployed is None else deployed.size_bytes
    timings["evaluation"] = time.perf_counter() - start
    start = time.perf_counter()
    if reference is None:
        latency_ms = measure_latency(shipped, input_shape, latency, device=device, gate=gate)
    else:
        reference_model, reference_ms = reference
        latency_ms = reference_ms * relative_latency(
            shipped, reference_model, input_shape, latency, device=device, gate=gate
        )
    timings["latency"] = time.perf_counter() - start
    return Measurements(accuracy, flops, params, size, latency_ms)
