"""Latency calibrations kept across runs: a nightly job of the same model on the same machine
measures its calibration once.

A calibration is keyed by everything its measurements depend on: the base model's structure (its
layer table: the shapes of its layers, not its weights, so a retrained model of the same
architecture reuses it), the policies measured, the input shape, how latency is measured (the
job's settings and calibration's own), the runtime and device, and the machine (processor, cores,
library versions). A key that matches holds the same measurements, up to the machine's noise.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from prunepilot._version import __version__
from prunepilot.evaluators import LatencySettings
from prunepilot.policies import Policy
from prunepilot.rundir import cache_dir, write_atomically
from prunepilot.search.calibration import (
    CALIBRATION_BATCH,
    CALIBRATION_ERROR,
    CALIBRATION_REPEATS,
    CALIBRATION_TIMINGS,
    CALIBRATION_WARMUP,
    Calibration,
)
from prunepilot.search.latency_model import layer_table

__all__ = ["calibration_key", "load_calibration", "save_calibration"]


def calibration_key(
    model: torch.nn.Module,
    input_shape: tuple[int, ...],
    policies: list[Policy],
    settings: LatencySettings,
    runtime: str,
    device: str,
) -> str:
    """A hex digest naming a calibration's measurements (see the module's docstring)."""
    described = {
        "structure": sorted((name, list(row)) for name, row in layer_table(model, input_shape).items()),
        "input_shape": list(input_shape),
        "policies": [p.to_json() for p in policies],
        "latency": settings.to_dict(),
        "runtime": runtime,
        "device": device,
        "machine": _machine(runtime),
        "method": [CALIBRATION_BATCH, CALIBRATION_TIMINGS, CALIBRATION_ERROR, CALIBRATION_REPEATS,
                   CALIBRATION_WARMUP],  # how they were timed
    }  # fmt: skip
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:24]


def load_calibration(key: str) -> tuple[Calibration, Path] | None:
    """The calibration kept under ``key`` and its file, or None when there is none (or it cannot
    be read: it is then measured again)."""
    path = _path(key)
    try:
        return Calibration.from_dict(json.loads(path.read_text())), path
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_calibration(key: str, calibration: Calibration) -> Path | None:
    """Keeps ``calibration`` under ``key``; returns its file, or None when the cache cannot be
    written (a read-only home, a full disk: the run goes on without it)."""
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(calibration.to_dict()))
    except OSError:
        return None
    return path


def _path(key: str) -> Path:
    return cache_dir() / "calibration" / f"{key}.json"


def _machine(runtime: str) -> dict[str, Any]:
    """What of the machine latency depends on."""
    described: dict[str, Any] = {
        "processor": _processor_name(),
        "architecture": platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "prunepilot": __version__,
    }
    if runtime == "onnxruntime":
        import onnxruntime

        described["onnxruntime"] = onnxruntime.__version__
    return described


def _processor_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
