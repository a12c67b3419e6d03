"""Measured latency: the median of repeated timed forward passes after warm-up."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from prunepilot.errors import invalid_parameter


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
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise invalid_parameter(name, "LatencySettings", f"an integer >= {low}", value)

    def to_dict(self) -> dict:
        return asdict(self)


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], settings: LatencySettings) -> float:
    """Median wall time of one forward pass in milliseconds, in inference mode on the CPU.

    Uses ``settings.threads`` torch threads for the measurement and restores the previous count.
    """
    inputs = torch.randn(settings.batch_size, *input_shape)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(settings.warmup):
                model(inputs)
            times = []
            for _ in range(settings.repeats):
                start = time.perf_counter()
                model(inputs)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous_threads)
    return statistics.median(times) * 1e3
