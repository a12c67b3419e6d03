"""Runtimes: where a model runs once shipped. Each one turns a pruned PyTorch model into what is
timed and scored there (PyTorch eager, or an ONNX Runtime session, optionally int8)."""

from prunepilot.runtimes.base import QUANTIZE_MODES, Deployed, DeployError, Runtime
from prunepilot.runtimes.registry import get_runtime, runtime_names

__all__ = ["QUANTIZE_MODES", "DeployError", "Deployed", "Runtime", "get_runtime", "runtime_names"]
