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
import math
import os
import platform
import stat
import sys
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

#: The most bytes a cached calibration may hold (a few hundred kilobytes is usual).
MAX_ENTRY_BYTES = 16 * 2**20


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


def load_calibration(key: str, measured: int) -> tuple[Calibration, Path] | None:
    """The calibration kept under ``key`` (of ``measured`` policies) and its file, or None when there
    is none, or when the entry is not one to trust: the cache is untrusted input, read only from a
    regular file (never through a link, never a FIFO), at most :data:`MAX_ENTRY_BYTES`, and every
    value checked. A bad entry is measured again, with one warning; it never reaches a run.
    """
    path = _path(key)
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # none kept (or a link: not followed)
    try:
        kind = os.fstat(handle)
        problem = None if stat.S_ISREG(kind.st_mode) else "not a regular file"
        if problem is None and kind.st_size > MAX_ENTRY_BYTES:
            problem = f"{kind.st_size:,} bytes, over the {MAX_ENTRY_BYTES:,} an entry may hold"
        data = None if problem else os.read(handle, MAX_ENTRY_BYTES + 1)
    finally:
        os.close(handle)
    if problem is None:
        try:
            calibration = Calibration.from_dict(json.loads(data))
            problem = _invalid(calibration, measured)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            problem = f"unreadable ({type(exc).__name__})"
    if problem is not None:
        print(f"prunepilot: warning: the cached latency calibration {path} is {problem}; measured again.",
              file=sys.stderr)  # fmt: skip
        return None
    return calibration, path


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


def _invalid(calibration: Calibration, measured: int) -> str | None:
    """What is wrong with a cached calibration of ``measured`` policies, or None."""

    def finite(x: object) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    def table(value: object) -> bool:
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(row, list) and all(finite(x) for x in row)
            for k, row in value.items()
        )

    ratios, tables, int8 = calibration.ratios, calibration.tables, calibration.int8
    if not (isinstance(ratios, list) and isinstance(tables, list) and len(ratios) == len(tables) == measured):
        return f"not a calibration of the {measured} policies measured"
    if not all(finite(r) and r > 0 for r in ratios):
        return "holding latency ratios that are not finite positive numbers"
    if not (table(calibration.base) and all(table(t) for t in tables)):
        return "holding layer tables that are not tables of finite numbers"
    if not (isinstance(int8, list) and len(int8) in (0, measured) and all(isinstance(q, bool) for q in int8)):
        return "holding precisions that are not true or false"
    return None


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
