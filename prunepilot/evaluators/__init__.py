"""Evaluators: accuracy, cost (FLOPs, parameters, size), latency, and the fast trial proxy."""

from prunepilot.evaluators.accuracy import top1_accuracy
from prunepilot.evaluators.cost import count_flops, count_params, flops_by_module, serialized_size
from prunepilot.evaluators.latency import LatencySettings, measure_latency, relative_latency, time_models
from prunepilot.evaluators.metrics import ModelMetrics, evaluate_model
from prunepilot.evaluators.proxy import fine_tune, recalibrate_batchnorm

__all__ = [
    "LatencySettings",
    "ModelMetrics",
    "count_flops",
    "count_params",
    "evaluate_model",
    "fine_tune",
    "flops_by_module",
    "measure_latency",
    "relative_latency",
    "recalibrate_batchnorm",
    "serialized_size",
    "time_models",
    "top1_accuracy",
]
