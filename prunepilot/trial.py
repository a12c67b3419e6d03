"""One trial: apply a policy, recalibrate BatchNorm, fine-tune briefly, evaluate.

:func:`run_trial` is a pure function of plain, picklable inputs, so that it runs unchanged in this
process or in a worker process.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from prunepilot.adapters import Loss, batches, samples
from prunepilot.errors import check_integer, invalid_parameter
from prunepilot.evaluators import LatencySettings, evaluate_model
from prunepilot.evaluators.metric import Metric
from prunepilot.families.distill import Distillation, Teacher
from prunepilot.families.sparsity import fold_sparsity
from prunepilot.gate import NullGate
from prunepilot.inputs import example_batch, on_device
from prunepilot.policies import Policy, PrunedModel, apply_policy
from prunepilot.runtimes import QUANTIZE_MODES, Deployed, get_runtime, runtime_names
from prunepilot.runtimes.base import SIZE_MEASURES
from prunepilot.runtimes.int8 import CALIBRATION_SAMPLES
from prunepilot.tasks.base import TaskData
from prunepilot.training import fine_tune, recalibrate_batchnorm

#: How the final model is pruned: all at once, or in stages with fine-tuning between them.
SCHEDULES = ("oneshot", "gradual")
#: Trial phases, in order, as keys of :attr:`TrialResult.timings`.
PHASES = ("apply", "bn_recalibration", "fine_tune", "deploy", "evaluation", "latency")


@dataclass(frozen=True)
class TrialSettings:
    """How a trial (or the final model) is trained and measured.

    Attributes:
        bn_batches: Training batches used to recompute BatchNorm statistics.
        finetune_steps: Fine-tune mini-batches after recalibration.
        batch_size: Mini-batch size for recalibration and fine-tuning.
        lr: Peak fine-tune learning rate (AdamW, cosine decay).
        gradient_batches: Training batches for gradient-based criteria (taylor).
        latency: How latency is measured.
        seed: Seeds the random criterion and the data order.
        reference_latency_ms: The base model's latency; when set, a trial times its pruned model
            alongside the base model and reports this times their ratio (steady on a machine whose
            speed drifts). None times the pruned model alone.
        metric: What scores a model on the validation split (top-1 accuracy by default).
        loss: What fine-tuning minimises (cross-entropy by default).
        runtime: Where models are timed and scored (a registered runtime: ``torch``,
            ``onnxruntime``).
        quantize: ``none``, ``int8`` or ``search``: with ``search``, a policy's model that the
            runtime cannot quantize runs in fp32 (the reason recorded); with ``int8`` it fails.
        distill: Fine-tunes also follow the unpruned model's class scores (see
            :mod:`prunepilot.families.distill`); None trains on the loss alone.
        schedule: ``oneshot`` prunes the policy at once, then fine-tunes; ``gradual`` prunes in
            ``schedule_stages`` steps along a cubic ramp with fine-tuning between them (see
            :mod:`prunepilot.families.gradual`), the same steps in all.
        schedule_stages: The stages of a ``gradual`` schedule (>= 2).
        size_measure: How sizes are counted: ``saved`` bytes, or ``zlib``-compressed (where the
            zeros of unstructured sparsity count).
    """

    bn_batches: int = 8
    finetune_steps: int = 120
    batch_size: int = 64
    lr: float = 1e-3
    gradient_batches: int = 4
    latency: LatencySettings = field(default_factory=LatencySettings)
    seed: int = 0
    reference_latency_ms: float | None = None
    metric: Metric = field(default_factory=Metric)
    loss: Loss = field(default_factory=Loss)
    runtime: str = "torch"
    quantize: str = "none"
    distill: Distillation | None = None
    schedule: str = "oneshot"
    schedule_stages: int = 4
    size_measure: str = "saved"

    def __post_init__(self) -> None:
        if self.runtime not in runtime_names():
            raise invalid_parameter("runtime", "TrialSettings", f"one of {runtime_names()}", self.runtime)
        if self.quantize not in QUANTIZE_MODES:
            raise invalid_parameter(
                "quantize", "TrialSettings", f"one of {list(QUANTIZE_MODES)}", self.quantize
            )
        reference = self.reference_latency_ms
        if reference is not None and (
            isinstance(reference, bool) or not isinstance(reference, (int, float)) or not reference > 0
        ):
            raise invalid_parameter(
                "reference_latency_ms", "TrialSettings", "None or a number > 0", reference
            )
        for name in ("bn_batches", "finetune_steps", "gradient_batches", "seed"):
            check_integer("TrialSettings", name, getattr(self, name), 0)
        check_integer("TrialSettings", "batch_size", self.batch_size, 1)
        check_integer("TrialSettings", "schedule_stages", self.schedule_stages, 2)
        if self.schedule not in SCHEDULES:
            raise invalid_parameter("schedule", "TrialSettings", f"one of {list(SCHEDULES)}", self.schedule)
        if self.size_measure not in SIZE_MEASURES:
            raise invalid_parameter("size_measure", "TrialSettings", f"one of {list(SIZE_MEASURES)}",
                                    self.size_measure)  # fmt: skip
        if self.distill is not None and not isinstance(self.distill, Distillation):
            raise invalid_parameter("distill", "TrialSettings", "None or a Distillation", self.distill)
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise invalid_parameter("lr", "TrialSettings", "a number > 0", self.lr)

    def to_dict(self) -> dict:
        return {**asdict(self), "metric": self.metric.to_dict(), "loss": self.loss.to_dict()}


@dataclass(frozen=True)
class TrialResult:
    """What a trial measured (plain data: no modules, no tensors).

    Attributes:
        accuracy: The job's metric (top-1 accuracy by default) on the validation split after the
            short fine-tune.
        flops: FLOPs of one sample's forward pass.
        params: Number of parameters.
        size_bytes: Size of what ships (the state dict, or the runtime's file).
        latency_ms: Measured median latency (see :class:`LatencySettings`) in the runtime.
        timings: Wall seconds of each phase in :data:`PHASES`.
        int8: Whether the model was measured quantized to int8.
        int8_fallback: Why a policy asking for int8 ran in fp32 (its model could not be
            quantized); None otherwise.
    """

    accuracy: float
    flops: int
    params: int
    size_bytes: int
    latency_ms: float
    timings: dict[str, float]
    int8: bool = False
    int8_fallback: str | None = None

    def cost(self, name: str) -> float:
        """The value of a cost a budget may bound (``latency_ms``, ``flops``, ``params``, ``size_bytes``)."""
        return float(getattr(self, name))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrialResult:
        return cls(**data)


def prune_and_train(
    model: nn.Module,
    train: torch.utils.data.Dataset,
    input_shape: tuple[int, ...],
    policy: Policy,
    settings: TrialSettings,
    timings: dict[str, float] | None = None,
    device: str | torch.device = "cpu",
    gate: NullGate | None = None,
    pruning: Callable[..., PrunedModel] | None = None,
    teacher: nn.Module | None = None,
) -> PrunedModel:
    """Applies ``policy`` to a copy of ``model`` at once, recalibrates BatchNorm and fine-tunes it
    (with ``settings.distill``, toward ``teacher``, by default ``model``); ``settings.schedule`` is
    :func:`~prunepilot.final.finalize`'s to read.

    Pruning happens on the CPU; the pruned model then moves to ``device`` for the rest.
    ``pruning`` replaces prunepilot's own application of the policy (:func:`apply_policy`) with
    another, called as ``pruning(model, train, input_shape, policy, settings)`` (benchmarks compare
    other pruners under the same recalibration and fine-tune).

    Returns:
        The fine-tuned model (on ``device``) and its plan (see :func:`apply_policy`).
    """
    timings = {} if timings is None else timings
    teacher_model = model if teacher is None else teacher
    distillation = None if settings.distill is None else Teacher(teacher_model, settings.distill)
    start = time.perf_counter()
    with (gate or NullGate()).compute():
        pruned, plan = (pruning or _apply)(model, train, input_shape, policy, settings)
        pruned = pruned.to(device)
    timings["apply"] = time.perf_counter() - start

    start = time.perf_counter()
    recalibrate_batchnorm(pruned, train, settings.bn_batches, settings.batch_size, device, gate)
    timings["bn_recalibration"] = time.perf_counter() - start

    start = time.perf_counter()
    fine_tune(
        pruned, train, settings.finetune_steps, settings.batch_size, settings.lr, settings.seed, device, gate,
        settings.loss, teacher=distillation,
    )  # fmt: skip
    fold_sparsity(pruned)  # the zeros the masks kept while training, as plain weights
    timings["fine_tune"] = time.perf_counter() - start
    return PrunedModel(pruned, plan)


def _apply(
    model: nn.Module, train: torch.utils.data.Dataset, input_shape: tuple[int, ...], policy: Policy,
    settings: TrialSettings,
) -> PrunedModel:
    """prunepilot's own pruning: ``policy`` applied to a copy of ``model`` (gradient-based criteria
    get ``settings.gradient_batches`` training batches)."""
    gradient_batches = itertools.islice(batches(train, settings.batch_size), settings.gradient_batches)
    return apply_policy(model, policy, input_shape, gradient_batches=gradient_batches, seed=settings.seed,
                        loss=settings.loss, keep_masks=True)  # fmt: skip


def deploy(
    model: nn.Module,
    train: torch.utils.data.Dataset,
    input_shape: tuple[int, ...],
    settings: TrialSettings,
    int8: bool = False,
) -> Deployed:
    """``model`` as it runs in the settings' runtime; int8 (its ranges calibrated on the first
    :data:`CALIBRATION_SAMPLES` training samples) when ``int8`` is set. With ``quantize="search"``
    a model the runtime cannot quantize runs in fp32, the reason in ``fallback``.

    Raises:
        DeployError: when the runtime cannot take the model (or, unless the search chooses the
            precision, cannot quantize it).
    """
    runtime = get_runtime(settings.runtime)
    example = example_batch(input_shape, 2, next(model.parameters(), torch.empty(0)).device)
    calibration = samples(train, CALIBRATION_SAMPLES) if int8 else None
    threads = settings.latency.threads
    if settings.quantize == "search":
        deployed = runtime.deploy_or_fp32(model, example, threads, int8, calibration)
    else:
        deployed = runtime.deploy(model, example, threads, int8, calibration)
    return replace(deployed, size_measure=settings.size_measure)


def run_trial(
    model: nn.Module,
    data: TaskData,
    policy: Policy,
    settings: TrialSettings,
    *,
    device: str | torch.device = "cpu",
    gate: NullGate | None = None,
) -> TrialResult:
    """Runs one trial on a copy of ``model`` and returns what it measured.

    What to run (the arguments before ``*``) is kept apart from where it runs (``device`` and the
    node's measurement ``gate``).

    Args:
        model: The base model (not changed).
        data: Training and validation splits and the input shape.
        policy: The pruning policy to apply.
        settings: Fine-tune and measurement settings.
        device: Where the pruned model trains and is measured (``cpu`` or ``cuda``).
        gate: The node's measurement gate (see :mod:`prunepilot.gate`).
    """
    timings: dict[str, float] = {}
    pruned, _ = prune_and_train(model, data.train, data.input_shape, policy, settings, timings, device, gate)
    start = time.perf_counter()
    with (gate or NullGate()).compute():
        shipped = deploy(pruned, data.train, data.input_shape, settings, policy.int8)
        reference = None
        if settings.reference_latency_ms is not None:
            base = deploy(on_device(model, device), data.train, data.input_shape, settings)
            reference = (base.module, settings.reference_latency_ms)
    timings["deploy"] = time.perf_counter() - start
    metrics = evaluate_model(
        pruned, data.val, data.input_shape, settings.latency, timings, device, gate, reference,
        metric=settings.metric, deployed=shipped,
    )  # fmt: skip
    return TrialResult(**metrics.to_dict(), timings=timings, int8=shipped.quantized,
                       int8_fallback=shipped.fallback)  # fmt: skip
