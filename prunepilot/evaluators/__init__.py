"""Evaluators: what a model scores and costs. The quality metric (top-1 accuracy or the user's),
costs (FLOPs, parameters, size), measured latency, and all of them at once."""

from prunepilot.evaluators.accuracy import top1_accuracy
from prunepilot.evaluators.cost import count_flops, count_params, flops_by_module, serialized_size
from prunepilot.evaluators.latency import LatencySettings, measure_latency, relative_latency, time_models
from prunepilot.evaluators.measure import Measurements, evaluate_model
from prunepilot.evaluators.metric import Metric, evaluate_metric

__all__ = [
    "LatencySettings",
    "Measurements",
    "Metric",
    "count_flops",
    "count_params",
    "evaluate_metric",
    "evaluate_model",
    "flops_by_module",
    "measure_latency",
    "relative_latency",
    "serialized_size",
    "time_models",
    "top1_accuracy",
]
