"""Measured latency: the median of repeated timed forward passes after warm-up."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from prunepilot.errors import check_integer
from prunepilot.evaluators.gate import NullGate


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


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    settings: LatencySettings,
    device: str | torch.device = "cpu",
    gate: NullGate | None = None,
) -> float:
    """Median wall time of one forward pass in milliseconds, in inference mode.

    Uses ``settings.threads`` torch threads and restores the previous count. On CUDA each pass is
    synchronised before the clock stops. The whole measurement holds ``gate`` exclusively, so no
    other trial on the node computes meanwhile.
    """
    device = torch.device(device)
    inputs = torch.randn(settings.batch_size, *input_shape, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    previous_threads = torch.get_num_threads()
    model.eval()
    gate = gate or NullGate()
    torch.set_num_threads(settings.threads)
    try:
        # Warm-up needs no quiet node: it runs as ordinary compute, and only the timed passes
        # (after two passes to re-warm the caches) hold the node exclusively.
        with gate.compute(), torch.inference_mode():
            for _ in range(settings.warmup):
                model(inputs)
            sync()
    finally:
        torch.set_num_threads(previous_threads)
    with gate.measure():
        torch.set_num_threads(settings.threads)
        try:
            with torch.inference_mode():
                for _ in range(min(2, settings.warmup)):
                    model(inputs)
                sync()
                times = []
                for _ in range(settings.repeats):
                    start = time.perf_counter()
                    model(inputs)
                    sync()
                    times.append(time.perf_counter() - start)
        finally:
            torch.set_num_threads(previous_threads)
    return statistics.median(times) * 1e3
