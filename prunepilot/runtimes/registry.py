"""The runtimes by name (``--runtime``)."""

from __future__ import annotations

from prunepilot.errors import invalid_parameter
from prunepilot.runtimes.base import Runtime
from prunepilot.runtimes.eager import TorchRuntime
from prunepilot.runtimes.onnx import OnnxRuntime
from prunepilot.settings.surface import field_owner

#: Registered runtimes: name -> class (a new runtime is one more entry).
RUNTIMES: dict[str, type[Runtime]] = {runtime.name: runtime for runtime in (TorchRuntime, OnnxRuntime)}


def runtime_names() -> list[str]:
    """The registered runtimes' names."""
    return list(RUNTIMES)


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name``.

    Raises:
        UsageError: naming the runtimes accepted.
    """
    if name not in RUNTIMES:
        raise invalid_parameter("runtime", field_owner("runtime"), f"one of {runtime_names()}", name)
    return RUNTIMES[name]()
