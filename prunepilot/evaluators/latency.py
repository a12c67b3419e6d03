"""Measured latency: the median of repeated timed forward passes after warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from prunepilot.adapters.several import Inputs, run
from prunepilot.errors import check_integer
from prunepilot.gate import NullGate
from prunepilot.inputs import example_batch


@dataclass(frozen=True)
class LatencySettings:
    """How latency is measured.

    Attributes:
        batch_size: Samples per timed forward pass.
        threads: Torch intra-op threads during measurement.
        warmup: Untimed passes before timing.
        repeats: Timed passes; the median is reported.
    """

    batch_size: int = 64
    threads: int = 1
    warmup: int = 10
    repeats: int = 30

    def __post_init__(self) -> None:
        for name, low in (("batch_size", 1), ("threads", 1), ("warmup", 0), ("repeats", 1)):
            check_integer("LatencySettings", name, getattr(self, name), low)

    def to_dict(self) -> dict:
        return asdict(self)


#: Timed passes per model in one round of an interleaved measurement.
ROUND_PASSES = 3


def time_models(
    models: Sequence[nn.Module],
    input_shape: tuple[int, ...],
    settings: LatencySettings,
    device: str | torch.device = "cpu",
    gate: NullGate | None = None,
    inputs: Inputs | None = None,
) -> list[float]:
    """Median wall time of one forward pass of each model, in milliseconds, in inference mode, on a
    synthetic batch of ``input_shape`` (``settings.batch_size`` samples) or on ``inputs`` when given
    (a tuple for an exported model of several inputs).

    The models are timed in alternating rounds of :data:`ROUND_PASSES` passes (``settings.repeats``
    timed passes each), so that a machine whose speed drifts slows them alike and their ratio holds.
    Uses ``settings.threads`` torch threads and restores the previous count. On CUDA each pass is
    synchronised before the clock stops. The timed rounds hold ``gate`` exclusively, so no other
    trial on the node computes meanwhile.
    """
    device = torch.device(device)
    if inputs is None:
        inputs = example_batch(input_shape, settings.batch_size, device)
    elif isinstance(inputs, tuple):
        inputs = tuple(t.to(device) for t in inputs)
    else:
        inputs = inputs.to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    previous_threads = torch.get_num_threads()
    for model in models:
        model.eval()
    gate = gate or NullGate()
    times: list[list[float]] = [[] for _ in models]
    torch.set_num_threads(settings.threads)
    try:
        # Warm-up needs no quiet node: it runs as ordinary compute, and only the timed passes
        # (after two passes to re-warm the caches) hold the node exclusively.
        with gate.compute(), torch.inference_mode():
            for model in models:
                for _ in range(settings.warmup):
                    run(model, inputs)
            sync()
        with gate.measure(), torch.inference_mode():
            for model in models:
                for _ in range(min(2, settings.warmup)):
                    run(model, inputs)
            sync()
            while len(times[-1]) < settings.repeats:
                for model, timed in zip(models, times):
                    for _ in range(min(ROUND_PASSES, settings.repeats - len(timed))):
                        start = time.perf_counter()
                        run(model, inputs)
                        sync()
                        timed.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous_threads)
    return [statistics.median(timed) * 1e3 for timed in times]


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    settings: LatencySettings,
    device: str | torch.device = "cpu",
    gate: NullGate | None = None,
    inputs: Inputs | None = None,
) -> float:
    """Median wall time of one forward pass of ``model`` in milliseconds (see :func:`time_models`)."""
    return time_models([model], input_shape, settings, device, gate, inputs)[0]


def relative_latency(
    model: nn.Module,
    reference: nn.Module,
    input_shape: tuple[int, ...],
    settings: LatencySettings,
    device: str | torch.device = "cpu",
    gate: NullGate | None = None,
) -> float:
    """``model``'s latency as a fraction of ``reference``'s, both timed in alternating rounds.

    On a shared machine whose speed drifts by tens of percent between measurements, this ratio is
    far steadier than either latency alone.
    """
    latency, reference_latency = time_models([model, reference], input_shape, settings, device, gate)
    return latency / reference_latency
