"""The job: everything one search needs, validated once, before anything runs.

:class:`JobSpec` holds the settings as given (flags, a job file, the Python API); its ``resolve``
checks every field and returns a :class:`ResolvedJob`, the frozen form the pipeline runs.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from prunepilot.adapters import BatchFormat, Loss
from prunepilot.budget import Budget, BudgetLimit, parse_budget
from prunepilot.errors import UsageError, check_integer
from prunepilot.evaluators import LatencySettings
from prunepilot.evaluators.metric import DIRECTIONS, Metric
from prunepilot.families import FamilyFields, field_owner, invalid_field
from prunepilot.imports import callable_name, is_import_path
from prunepilot.inputs import INPUT_DTYPES
from prunepilot.policies import MAX_RATIO, criterion_names
from prunepilot.rundir import FOLDER_NAME, is_folder_name
from prunepilot.runtimes import QUANTIZE_MODES, runtime_names
from prunepilot.search.calibration import CALIBRATION_SAMPLES
from prunepilot.search.executors import UNGATED_DIR, RaySettings
from prunepilot.search.latency_model import MIN_SAMPLES
from prunepilot.search.promotion import PROMOTION_SHARE
from prunepilot.tasks.builtin import BUILTIN_TASKS, DEFAULT_TASK
from prunepilot.trial import TrialSettings

__all__ = ["RESUMABLE", "JobSpec", "ResolvedJob"]

#: Fields that may change when a run is resumed: how many trials, and where they run.
RESUMABLE = ("trials", "timeout", "workers", "ray_address", "cpus_per_trial", "gpus_per_trial",
             "max_retries", "latency_gate")  # fmt: skip
MAX_TRIALS = 1_000_000  # a study's journal is replayed whole when it is opened


@dataclass(frozen=True)
class JobSpec(FamilyFields):
    """A search job (what the command-line flags hold); change it with ``dataclasses.replace``.

    The pruning families' settings (distillation, schedule, slimming, sparsity) are
    :class:`FamilyFields`'.

    Attributes:
        budget: Budget text (``30ms``, ``2x``, ``120MFLOPs`` ...); None only for a dry run.
        trials: Trials to finish in the run (a resumed run counts those already finished).
        timeout: Seconds after which no new trial starts; None for no limit.
        name: Run name (folder under ``out``); None for a timestamped one.
        out: Folder holding run directories.
        resume: Continue the run ``out/name`` instead of starting one.
        task: The built-in task searched when ``model`` is None (``digits`` or ``mnist``).
        model: ``pkg.module:factory`` returning the model; None for the built-in task.
        weights: Checkpoint (a state dict) loaded with ``weights_only=True``.
        data: ``pkg.module:factory`` returning (train, val, test) datasets.
        input_shape: Shape of one input sample, checked against the data.
        input_dtype: The input's dtype (``float32``, ``int64`` for token ids ...), checked against
            the data (None: the data's); the synthetic inputs that trace, time and count the model
            have it.
        metric: ``pkg.module:callable`` scoring ``(outputs, labels) -> float`` over a split; None for
            top-1 accuracy.
        metric_direction: ``maximize`` or ``minimize`` (a loss, an error rate).
        loss: ``pkg.module:callable`` ``(model, batch) -> loss tensor`` that fine-tuning minimises
            (the user's model and a batch as the data gives it); None for cross-entropy.
        input_key: The key of the model's input in dict batches; None tries ``input_ids``,
            ``pixel_values``, ``input`` ...
        label_key: The key of the labels in dict batches; None tries ``labels``, ``label`` ...
        output_key: The key (or attribute) of the class scores in the model's output; None takes
            a tensor output as is, ``logits`` of a dict or ``ModelOutput``, the first of a tuple.
        device: The target device: where latency is measured and the final model is made
            (``cpu``, ``cuda`` or ``cuda:N``).
        runtime: Where latency and scores are measured: ``torch``, ``onnxruntime``; None: ``torch``,
            or ``onnxruntime`` when ``quantize`` asks for int8.
        quantize: int8 by ONNX Runtime: ``none``, ``int8`` or ``search`` (chosen per policy).
        policy: A policy JSON file to evaluate first, as a warm start.
        study: A study name shared by runs (nightly): each run adds its trials to it and starts from
            the front of the earlier runs. None: the run has a study of its own.
        storage: Optuna storage URL of the study (``sqlite:///studies.db``, ``postgresql://...``)
            or a journal file path; None: the run's own journal file (or, with ``study``, one
            journal shared by the runs in ``out``).
        seed: Seeds the sampler, the data order and the random criterion.
        finetune_steps: Fine-tune steps per trial.
        final_steps: Fine-tune steps of the chosen model.
        promotion_share: With a budget the baseline meets (the whole trade-off), the front's
            cheapest points get the final fine-tune within this share of the trials' worker time.
        lr: Fine-tune learning rate.
        batch_size: Fine-tune and recalibration batch size.
        bn_batches: Batches for BatchNorm recalibration.
        latency_batch: Batch size of latency measurement; None for the task's default.
        threads: Torch threads during latency measurement.
        latency_repeats: Timed forward passes per latency measurement (median taken).
        ratio_min: Smallest pruning ratio proposed for a group.
        ratio_max: Largest pruning ratio proposed for a group.
        exclude: Groups and blocks left alone (never pruned, never removed): names or shell
            patterns (``layer3.*``), each matching at least one group or block.
        block_removal: Let the search remove whole residual blocks (those with an identity
            shortcut, found by ``discover_blocks``) besides pruning channels.
        round_to: Kept channels are rounded up to a multiple of this.
        round_to_choices: Roundings the search chooses from per policy; None keeps ``round_to``.
        criteria: Criteria the search may choose from; None for all.
        screen: Predict each sampled policy's budget metric before training it, and reject or
            repair policies predicted over budget (budget-aware sampling).
        fill: With the screen, lower (or, over budget, raise) a sampled policy's ratios until it
            lands just under the budget (the search chooses where to prune, the budget how much);
            never with a budget the baseline already meets.
        calibration_samples: Policies measured to calibrate the latency predictor of a latency
            budget's screen; 0 screens no latency budget.
        discovery_timeout: Seconds each discovery step (tracing, blocks, trying groups) may take.
        discovery_memory_gb: GiB each discovery step may add to the process; None for half the
            machine's memory.
        dry_run: Print groups, baseline and space; run no trial.
        workers: Trials in flight on Ray; None sizes it to the cluster; 0 runs trials one at a
            time in this process, without Ray.
        ray_address: A Ray cluster to join; None starts a local instance (or uses ``RAY_ADDRESS``).
        cpus_per_trial: CPUs a trial reserves on Ray (and its torch threads).
        gpus_per_trial: GPUs a trial reserves on Ray; a trial given a GPU runs on CUDA.
        max_retries: Times Ray re-runs a trial whose worker process or node died.
        latency_gate: Pause a node's other trials while one measures latency (honest latency at
            some throughput); False lets measurements overlap other trials' compute.
        python_model: The class (``module.QualName``) of a model given as a Python object with its
            data (``prunepilot.search``), not named by ``model`` and ``data``; such a run can be
            continued only from Python, with a model of that class. None otherwise.
    """

    budget: str | None = None
    trials: int = 24
    timeout: float | None = None
    name: str | None = None
    out: str = "runs"
    resume: bool = False
    task: str = DEFAULT_TASK
    model: str | None = None
    weights: str | None = None
    data: str | None = None
    input_shape: tuple[int, ...] | None = None
    input_dtype: str | None = None
    metric: str | Callable | None = None
    metric_direction: str = "maximize"
    loss: str | Callable | None = None
    input_key: str | None = None
    label_key: str | None = None
    output_key: str | None = None
    device: str = "cpu"
    runtime: str | None = None
    quantize: str = "none"
    policy: str | None = None
    study: str | None = None
    storage: str | None = None
    seed: int = 0
    finetune_steps: int = TrialSettings.finetune_steps
    final_steps: int = 600
    promotion_share: float = PROMOTION_SHARE
    lr: float = 1e-3
    batch_size: int = 64
    bn_batches: int = 8
    latency_batch: int | None = None
    threads: int = 1
    latency_repeats: int = 30
    ratio_min: float = 0.0
    ratio_max: float = 0.8
    exclude: list[str] | None = None
    block_removal: bool = True
    round_to: int = 1
    round_to_choices: list[int] | None = None
    criteria: list[str] | None = None
    screen: bool = True
    fill: bool = True
    calibration_samples: int = CALIBRATION_SAMPLES
    discovery_timeout: float = 120.0
    discovery_memory_gb: float | None = None
    dry_run: bool = False
    workers: int | None = None
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_retries: int = 2
    latency_gate: bool = True
    python_model: str | None = None

    def validate(self) -> JobSpec:
        """Checks every field; raises ``UsageError`` naming the first one that is wrong."""
        for problem in self.problems()[:1]:
            raise problem
        return self

    def resolve(self) -> ResolvedJob:
        """The job validated once, with its budget parsed.

        Raises:
            UsageError: naming the first field that is wrong.
        """
        self.validate()
        return ResolvedJob(self, parse_budget(self.budget) if self.budget is not None else None)

    def problems(self) -> list[UsageError]:
        """Every field that is wrong, one error each (empty when the job is valid)."""
        found = []
        for check in self._checks():
            try:
                check()
            except UsageError as exc:
                found.append(exc)
        return found

    def _checks(self) -> list[Callable[[], None]]:
        def integers(*names: str, low: int, high: int | None = None) -> list[Callable[[], None]]:
            return [lambda name=name: _integer(self, name, low, high) for name in names]

        def require(ok: Callable[[], bool], name: str, accepted: str) -> Callable[[], None]:
            def check() -> None:
                try:
                    valid = ok()
                except (TypeError, ValueError):
                    valid = False
                if not valid:
                    raise invalid_field(name, accepted, getattr(self, name))

            return check

        roundings = self.round_to_choices
        return [
            *integers("trials", low=1, high=MAX_TRIALS),
            *integers("seed", low=0, high=2**32 - 1),  # what NumPy and torch accept
            *integers("finetune_steps", "final_steps", "bn_batches", "max_retries", low=0),
            require(lambda: self.name is None or is_folder_name(self.name), "name", FOLDER_NAME),
            require(lambda: self.policy is None or isinstance(self.policy, (str, os.PathLike)), "policy",
                    "None or the path of a policy JSON file"),
            *integers("batch_size", "threads", "latency_repeats", "round_to", low=1),
            *([] if self.calibration_samples == 0 else integers(
                "calibration_samples", low=MIN_SAMPLES * (2 if self._calibrates_both_precisions() else 1))),
            *([] if self.latency_batch is None else integers("latency_batch", low=1)),
            *([] if self.workers is None else integers("workers", low=0)),
            require(
                lambda: roundings is None
                or (bool(roundings) and all(_is_int(v) and v >= 1 for v in roundings)),
                "round_to_choices",
                "a non-empty list of integers >= 1",
            ),
            require(lambda: math.isfinite(self.cpus_per_trial) and self.cpus_per_trial > 0,
                    "cpus_per_trial", "a number > 0"),
            require(lambda: math.isfinite(self.gpus_per_trial) and self.gpus_per_trial >= 0,
                    "gpus_per_trial", "a number >= 0"),
            require(lambda: self.timeout is None or (math.isfinite(self.timeout) and self.timeout > 0),
                    "timeout", "a number of seconds > 0"),
            require(lambda: math.isfinite(self.lr) and self.lr > 0, "lr", "a finite number > 0"),
            require(lambda: 0 <= self.promotion_share <= 1, "promotion_share", "in [0, 1]"),
            require(lambda: self.discovery_timeout > 0, "discovery_timeout", "a number of seconds > 0"),
            require(lambda: self.discovery_memory_gb is None or self.discovery_memory_gb > 0,
                    "discovery_memory_gb", "None or a number of GiB > 0"),
            require(lambda: 0 < self.ratio_max <= MAX_RATIO, "ratio_max", f"in (0, {MAX_RATIO}]"),
            require(lambda: 0 <= self.ratio_min <= self.ratio_max, "ratio_min",
                    f"in [0, ratio_max={self.ratio_max}]"),
            require(lambda: self.exclude is None or (isinstance(self.exclude, (list, tuple))
                                                     and all(isinstance(p, str) and p for p in self.exclude)),
                    "exclude", "a list of group names or patterns"),
            require(lambda: self.input_dtype is None or self.input_dtype in INPUT_DTYPES, "input_dtype",
                    f"one of {list(INPUT_DTYPES)}"),
            *[require(lambda name=name: getattr(self, name) is None or (isinstance(getattr(self, name), str)
                      and getattr(self, name) != ""), name, "None or a non-empty string")
              for name in ("input_key", "label_key", "output_key")],
            require(lambda: self.loss is None or callable(self.loss) or is_import_path(self.loss),
                    "loss", "None or an import path 'package.module:callable'"),
            require(lambda: self.metric_direction in DIRECTIONS, "metric_direction",
                    f"one of {list(DIRECTIONS)}"),
            require(lambda: re.fullmatch(r"cpu|cuda(:\d+)?", self.device) is not None, "device",
                    "'cpu', 'cuda' or 'cuda:N'"),
            require(lambda: self.device == "cpu" or self.workers == 0 or self.gpus_per_trial > 0
                    or self.dry_run, "device", "'cpu' unless trials get a GPU (--gpus-per-trial > 0)"),
            require(lambda: self.device != "cpu" or self.gpus_per_trial == 0, "gpus_per_trial",
                    "0 when the target device is 'cpu' (a trial given a GPU is timed on it)"),
            require(lambda: self.runtime in (None, *runtime_names()), "runtime", f"one of {runtime_names()}"),
            require(lambda: self.quantize in QUANTIZE_MODES, "quantize", f"one of {list(QUANTIZE_MODES)}"),
            require(lambda: self.quantize == "none" or self.runtime != "torch", "quantize",
                    "'none' with --runtime torch (int8 runs in ONNX Runtime: --runtime onnxruntime, or no "
                    "--runtime)"),
            require(lambda: self.device == "cpu" or self.deploy_runtime == "torch", "device", "'cpu' with "
                    "--runtime onnxruntime"),
            require(
                lambda: self.criteria is None
                or (bool(self.criteria) and all(c in criterion_names() for c in self.criteria)),
                "criteria",
                f"a non-empty list from {criterion_names()}",
            ),
            require(lambda: self.task in BUILTIN_TASKS, "task", f"one of {sorted(BUILTIN_TASKS)}"),
            require(lambda: self.budget is not None or self.dry_run, "budget", "given (e.g. 30ms, 2x, 50%)"),
            self._check_budget,
            *self._family_checks(),
        ]  # fmt: skip

    def _calibrates_both_precisions(self) -> bool:  # fp32 and int8 policies share a calibration
        try:
            return self.quantize == "search" and parse_budget(self.budget).cost == "latency_ms"
        except (UsageError, TypeError):
            return False

    def _check_budget(self) -> None:
        if self.budget is not None:
            try:
                parse_budget(self.budget)
            except UsageError as exc:
                raise UsageError(str(exc), "budget") from None

    @property
    def deploy_runtime(self) -> str:
        """The runtime the run measures in: ``runtime``, else ``onnxruntime`` when quantizing."""
        return self.runtime or ("torch" if self.quantize == "none" else "onnxruntime")

    def trial_settings(self, latency_batch: int) -> TrialSettings:
        return TrialSettings(
            runtime=self.deploy_runtime, quantize=self.quantize, bn_batches=self.bn_batches,
            finetune_steps=self.finetune_steps, batch_size=self.batch_size, lr=self.lr,
            latency=self.latency_settings(latency_batch), seed=self.seed,
            metric=Metric(self.metric, self.metric_direction), loss=Loss(self.loss),
            distill=self.distillation(), size_measure=self.sizes_counted,
        )  # fmt: skip

    def reading(self) -> dict[str, object]:
        """How the model's data, outputs and loss are read (``checked_task``'s keyword arguments)."""
        return {
            "batch_format": BatchFormat(self.input_key, self.label_key),
            "output_key": self.output_key,
            "loss": Loss(self.loss),
        }

    def executor_settings(self) -> RaySettings | None:
        """Where trials run: Ray settings, or None for this process (``workers == 0``)."""
        if self.workers == 0:
            return None
        return RaySettings(
            address=self.ray_address,
            workers=self.workers,
            cpus_per_trial=self.cpus_per_trial,
            gpus_per_trial=self.gpus_per_trial,
            max_retries=self.max_retries,
            **({} if self.latency_gate else {"gate_dir": UNGATED_DIR}),
        )

    def final_settings(self, settings: TrialSettings) -> TrialSettings:
        """The trial settings with the final fine-tune's length and schedule."""
        return replace(settings, finetune_steps=self.final_steps, schedule=self.schedule,
                       schedule_stages=self.schedule_stages)  # fmt: skip

    def latency_settings(self, latency_batch: int, repeats: int | None = None) -> LatencySettings:
        return LatencySettings(
            batch_size=self.latency_batch or latency_batch,
            threads=self.threads,
            warmup=max(5, self.latency_repeats // 3),
            repeats=repeats or self.latency_repeats,
        )

    def to_dict(self) -> dict:
        """Plain data (``config.json``); a callable given from Python is recorded by its name."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**values, "loss": callable_name(self.loss), "metric": callable_name(self.metric)}

    @classmethod
    def from_dict(cls, data: dict) -> JobSpec:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        # A run saved before block removal existed removed no block: resumed, it still does not.
        values.setdefault("block_removal", False)
        if values.get("input_shape") is not None:
            values["input_shape"] = tuple(values["input_shape"])
        return cls(**values)


@dataclass(frozen=True)
class ResolvedJob:
    """A job checked once (see :meth:`JobSpec.resolve`): what every stage of the pipeline reads.

    Attributes:
        spec: The job's settings, every field valid.
        budget: The parsed budget; None only for a dry run without one.
    """

    spec: JobSpec
    budget: Budget | None

    def budget_limit(self, baseline: dict[str, float]) -> BudgetLimit:
        """The budget resolved against the baseline's measurements (its one judge from then on).

        Raises:
            UsageError: when the job has no budget (only a dry run may lack one).
        """
        if self.budget is None:
            raise invalid_field("budget", "given (e.g. 30ms, 2x, 50%)", None)
        return self.budget.resolve(baseline[self.budget.cost])


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(spec: JobSpec, name: str, low: int, high: int | None) -> None:
    check_integer(field_owner(name), name, getattr(spec, name), low, high)
