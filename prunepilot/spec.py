"""The job: everything one search needs, each setting declared once, validated once before
anything runs.

:class:`JobSpec` holds the settings as given (flags, a job file, the Python API); each field is a
:func:`~prunepilot.settings.setting` declaration, from which come its flag, job-file key, check, JSON
Schema and reference row. ``resolve`` checks every field and the rules between them and returns a
:class:`ResolvedJob`, the frozen form the pipeline runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

from prunepilot.adapters import Loss
from prunepilot.budget import ACCEPTED_FORMS, Budget, BudgetLimit, parse_budget
from prunepilot.errors import UsageError
from prunepilot.evaluators import LatencySettings
from prunepilot.evaluators.metric import Metric
from prunepilot.families.settings import FAMILY_RULES, FamilyFields
from prunepilot.imports import callable_name
from prunepilot.policies import MAX_RATIO, criterion_names
from prunepilot.rundir import FOLDER_NAME, is_folder_name
from prunepilot.runtimes import QUANTIZE_MODES, runtime_names
from prunepilot.search.calibration import CALIBRATION_SAMPLES
from prunepilot.search.executors import UNGATED_DIR, RaySettings
from prunepilot.search.latency_model import MIN_SAMPLES
from prunepilot.search.promotion import PROMOTION_SHARE
from prunepilot.settings import (
    Check,
    Integer,
    Items,
    Number,
    OneOf,
    field_problems,
    invalid_field,
    named,
    setting,
    settings_of,
)  # fmt: skip
from prunepilot.settings.rules import Rule, rule_problems
from prunepilot.tasks.builtin import DEFAULT_TASK
from prunepilot.tasks.settings import TaskFields
from prunepilot.trial import TrialSettings

__all__ = ["BUILTIN_LATENCY_BATCH", "DEFAULT_LATENCY_BATCH", "RESUMABLE", "RULES", "SECTIONS", "JobSpec",
           "ResolvedJob"]  # fmt: skip

MAX_TRIALS = 1_000_000  # a study's journal is replayed whole when it is opened
#: Samples per timed forward pass when the job sets none: a user's model, a built-in task's.
DEFAULT_LATENCY_BATCH, BUILTIN_LATENCY_BATCH = 1, 64
#: The job file's sections (a key's part before the dot), in order, and what each holds; the
#: command line's help groups its flags the same way.
SECTIONS = {
    "": "the run", "model": f"model (default: the built-in {DEFAULT_TASK} task)", "data": "data",
    "metric": "metric", "deploy": "where the model will run", "latency": "latency measurement",
    "space": "search space", "finetune": "fine-tuning", "slimming": "slimming warm-up",
    "discovery": "discovery bounds", "screen": "screening sampled policies", "ray": "where trials run (Ray)",
}  # fmt: skip
_SECONDS = Number(0, low_open=True, text="a number of seconds > 0")
_DEVICE = r"cpu|cuda(:\d+)?"


@dataclass(frozen=True)
class JobSpec(TaskFields, FamilyFields):
    """A search job (what the command-line flags hold); change it with ``dataclasses.replace``.

    What each field means is its declaration's help (``prunepilot search --help``,
    ``docs/reference.md``); the model's, data's and metric's settings are :class:`TaskFields`', the
    pruning families' :class:`FamilyFields`'.
    """

    budget: str | None = setting(
        None, "what the model must fit: " + ACCEPTED_FORMS + "; one the baseline already meets ('100%') "
        "maps the whole trade-off. Latency is measured in --runtime; a size counts int8 weights as stored; "
        "FLOPs are the same in int8 and fp32", key="budget", default_text="none; required but for --dry-run",
        example="2x", api=False,
    )  # fmt: skip
    trials: int = setting(
        24, "trials to finish in the run (a resumed run counts those already finished)", key="trials",
        check=Integer(1, MAX_TRIALS), resumable=True,
    )  # fmt: skip
    timeout: float | None = setting(
        None, "seconds after which no new trial starts", key="timeout", check=_SECONDS, default_text="none",
        example=3600, resumable=True,
    )  # fmt: skip
    name: str | None = setting(
        None, "run name: the run directory is <out>/<name>", key="name",
        check=Check(is_folder_name, FOLDER_NAME),
        default_text="search-<timestamp>", example="nightly",
    )  # fmt: skip
    out: str = setting("runs", "folder of run directories", key="out")
    resume: bool = setting(
        False, "continue the run --name (default: the newest run in --out) with its saved job", key=None
    )  # fmt: skip
    dry_run: bool = setting(
        False, "print groups, blocks, baseline and search space, and make and run the smallest model of the "
        "space (checked against the budget when one is given); run no trial", key=None,
    )  # fmt: skip
    policy: str | None = setting(
        None, "a policy JSON file to evaluate first (warm start)", key="policy", default_text="none",
        example="start.json",
    )  # fmt: skip
    study: str | None = setting(
        None, "a study shared by runs (nightly): trials accumulate in it, and a new run starts from the "
        "front of the earlier ones", key="study", default_text="none", example="digits-nightly",
    )  # fmt: skip
    storage: str | None = setting(
        None, "Optuna storage URL of the study (sqlite:///studies.db, postgresql://...) or a journal file "
        "path", key="storage", default_text="the run's journal; with --study, <out>/studies.journal",
        example="sqlite:///studies.db",
    )  # fmt: skip
    seed: int = setting(
        0, "seeds the sampler, the data order and the random criterion", key="seed",
        check=Integer(0, 2**32 - 1),
    )  # fmt: skip
    device: str = setting(
        "cpu", "the target device, where latency is measured and the final model is made: cpu, cuda or "
        "cuda:N",
        key="model.device", check=Check(lambda v: re.fullmatch(_DEVICE, v) is not None,
                                        "'cpu', 'cuda' or 'cuda:N'", {"pattern": f"^(?:{_DEVICE})$"}),
    )  # fmt: skip
    runtime: str | None = setting(
        None, "where every latency and score of the run is measured: PyTorch eager, or the model exported to "
        "ONNX and run in ONNX Runtime on the CPU", key="deploy.runtime", check=OneOf(runtime_names),
        default_text="torch; onnxruntime with --quantize", example="onnxruntime",
        note="ONNX Runtime runs with --threads and needs --device cpu",
    )  # fmt: skip
    quantize: str = setting(
        "none", "int8 quantization by ONNX Runtime (static with per-channel weights; dynamic for "
        "Linear-heavy models) after each policy's fine-tune: none, int8 (every policy), search (the search "
        "chooses per policy; a model that cannot be quantized runs fp32)", key="deploy.quantize",
        check=OneOf(QUANTIZE_MODES), note="static QDQ calibrates uint8 activations on 256 training samples; "
        "search calibrates the latency predictor for each precision, so --calibration-samples must be at "
        f"least {2 * MIN_SAMPLES} with a latency budget",
    )  # fmt: skip
    latency_batch: int | None = setting(
        None, "samples per timed forward pass", key="latency.batch_size", check=Integer(1),
        default_text=f"{BUILTIN_LATENCY_BATCH} for the built-in tasks, {DEFAULT_LATENCY_BATCH} otherwise",
        example=BUILTIN_LATENCY_BATCH,
    )  # fmt: skip
    threads: int = setting(1, "torch threads while timing", key="latency.threads", check=Integer(1))
    latency_repeats: int = setting(
        30, "timed passes per measurement; the median is kept", key="latency.repeats", check=Integer(1)
    )  # fmt: skip
    ratio_min: float = setting(
        0.0, "smallest pruning ratio of a group", key="space.ratio_min", check=Number(0, MAX_RATIO)
    )  # fmt: skip
    ratio_max: float = setting(
        0.8, f"largest pruning ratio of a group, at most {MAX_RATIO}", key="space.ratio_max",
        check=Number(0, MAX_RATIO, low_open=True),
    )  # fmt: skip
    exclude: list[str] | None = setting(
        None, "groups and blocks left alone: names or shell patterns, e.g. 'conv1,layer3.*' (a job file: a "
        "list)", key="space.exclude", check=Items(None, "a list of group names or patterns", non_empty=False),
        default_text="none",
        example=["conv1", "layer3.*"],
    )  # fmt: skip
    block_removal: bool = setting(
        True, "let the search remove whole residual blocks (those with an identity shortcut) besides pruning "
        "channels", key="space.block_removal",
    )  # fmt: skip
    criteria: list[str] | None = setting(
        None, "criteria the search may choose from: " + ",".join(criterion_names()), key="space.criteria",
        check=Items(OneOf(criterion_names), f"a non-empty list from {criterion_names()}"), default_text="all",
        example=criterion_names(),
    )  # fmt: skip
    round_to: int = setting(
        1, "kept channels are rounded up to a multiple of this", key="space.round_to", check=Integer(1)
    )  # fmt: skip
    round_to_choices: list[int] | None = setting(
        None, "roundings the search chooses from per policy, e.g. 1,8,16 (overrides --round-to)",
        key="space.round_to_choices", check=Items(Integer(1), "a non-empty list of integers >= 1"),
        default_text="none", example=[1, 8, 16],
    )  # fmt: skip
    finetune_steps: int = setting(
        TrialSettings.finetune_steps, "fine-tune steps per trial", key="finetune.steps", check=Integer(0)
    )  # fmt: skip
    final_steps: int = setting(
        600, "fine-tune steps of the chosen model (and of prunepilot export)", key="finetune.final_steps",
        check=Integer(0),
    )  # fmt: skip
    promotion_share: float = setting(
        PROMOTION_SHARE, "with a budget the baseline meets (the whole trade-off): the front's cheapest "
        "points get the final fine-tune, within this share of the trials' worker time (0: none)",
        key="finetune.promotion_share", check=Number(0, 1),
    )  # fmt: skip
    lr: float = setting(
        1e-3, "peak fine-tune learning rate (AdamW, cosine decay)", key="finetune.lr",
        check=Number(0, low_open=True),
    )  # fmt: skip
    batch_size: int = setting(
        64, "fine-tune and recalibration batch size", key="finetune.batch_size", check=Integer(1)
    )  # fmt: skip
    bn_batches: int = setting(
        8, "batches for BatchNorm recalibration", key="finetune.bn_batches", check=Integer(0)
    )  # fmt: skip
    discovery_timeout: float = setting(
        120.0, "CPU seconds (for each of torch's threads) each discovery step (tracing, blocks, trying each "
        "group) may take, however busy the machine (a step that waits stops at 10 times that in wall time)",
        key="discovery.timeout",
        check=_SECONDS, note="past it, one line and exit 2",
    )  # fmt: skip
    discovery_memory_gb: float | None = setting(
        None, "GiB each discovery step may add to the process", key="discovery.memory_gb",
        check=Number(0, low_open=True, text="None or a number of GiB > 0"),
        default_text="half the machine's memory", example=12.0,
    )  # fmt: skip
    screen: bool = setting(
        True, "predict each sampled policy's budget metric before training it and skip those predicted over "
        "budget", key="screen.enabled",
    )  # fmt: skip
    fill: bool = setting(
        True, "with the screen, lower (or raise) a sampled policy's ratios until it lands just under the "
        "budget",
        key="screen.fill",
    )  # fmt: skip
    calibration_samples: int = setting(
        CALIBRATION_SAMPLES, "pruned models timed to calibrate the latency predictor that screens a latency "
        f"budget (0: no latency screen; otherwise at least {MIN_SAMPLES})", key="screen.calibration_samples",
        check=Integer(0), note="a calibration measured before for a model of the same structure on this "
        "machine is reused from the cache",
    )  # fmt: skip
    workers: int | None = setting(
        None, "trials in flight; 0 runs them one at a time in this process, without Ray", key="ray.workers",
        check=Integer(0), default_text="sized to the Ray cluster", example=2, resumable=True,
    )  # fmt: skip
    ray_address: str | None = setting(
        None, "a Ray cluster to join", key="ray.address", default_text="RAY_ADDRESS, else a local instance",
        example="auto", resumable=True,
    )  # fmt: skip
    cpus_per_trial: float = setting(
        1.0, "CPUs a trial reserves (and its torch threads)", key="ray.cpus_per_trial",
        check=Number(0, low_open=True, text="a number > 0"), resumable=True,
    )  # fmt: skip
    gpus_per_trial: float = setting(
        0.0, "GPUs a trial reserves (needs --device cuda); a trial given a GPU runs on CUDA",
        key="ray.gpus_per_trial", check=Number(0, text="a number >= 0"), resumable=True,
    )  # fmt: skip
    max_retries: int = setting(
        2, "re-runs of a trial whose worker process or node died", key="ray.max_retries", check=Integer(0),
        resumable=True,
    )  # fmt: skip
    latency_gate: bool = setting(
        True, "pause a node's other trials while one measures latency (off: more trials per minute, noisier "
        "latency)", key="ray.latency_gate", resumable=True,
    )  # fmt: skip
    python_model: str | None = setting(
        None, "the class (module.QualName) of a model given as a Python object (prunepilot.search); such a "
        "run can be continued only from Python, with a model of that class", key=None, flag=None, api=False,
    )  # fmt: skip

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
        """Every field that is wrong, one error each (empty when the job is valid): each setting
        as declared, then the rules between settings (:data:`RULES`) of the fields that passed."""
        found = field_problems(self)
        return found + rule_problems(self, (*RULES, *FAMILY_RULES), {p.field for p in found})

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


def _calibrates_both_precisions(job: JobSpec) -> bool:  # fp32 and int8 policies share a calibration
    try:
        return job.quantize == "search" and parse_budget(job.budget).cost == "latency_ms"
    except (UsageError, TypeError):
        return False


def _least(job: JobSpec) -> int:
    """The fewest calibration samples a job's latency screen needs."""
    return MIN_SAMPLES * (2 if _calibrates_both_precisions(job) else 1)


#: The rules between the job's settings, beside the families' (:data:`FAMILY_RULES`).
RULES = (
    Rule("calibration_samples", lambda j: j.calibration_samples == 0 or j.calibration_samples >= _least(j),
         lambda j: f"0 or an integer >= {_least(j)}", reads=("quantize", "budget")),
    Rule("ratio_min", lambda j: j.ratio_min <= j.ratio_max, lambda j: f"in [0, ratio_max={j.ratio_max}]",
         reads=("ratio_max",)),
    Rule("device", lambda j: j.device == "cpu" or j.workers == 0 or j.gpus_per_trial > 0 or j.dry_run,
         lambda _: f"'cpu' unless trials get a GPU ({named('gpus_per_trial')} > 0)",
         reads=("workers", "gpus_per_trial", "dry_run")),
    Rule("gpus_per_trial", lambda j: j.device != "cpu" or j.gpus_per_trial == 0,
         "0 when the target device is 'cpu' (a trial given a GPU is timed on it)", reads=("device",)),
    Rule("quantize", lambda j: j.quantize == "none" or j.runtime != "torch",
         lambda _: f"'none' with {named('runtime')} torch (int8 runs in ONNX Runtime: {named('runtime')} "
         f"onnxruntime, or no {named('runtime')})", reads=("runtime",)),
    Rule("device", lambda j: j.device == "cpu" or j.deploy_runtime == "torch",
         lambda _: f"'cpu' with {named('runtime')} onnxruntime", reads=("runtime", "quantize")),
    Rule("budget", lambda j: j.budget is not None or j.dry_run, "given (e.g. 30ms, 2x, 50%)",
         reads=("dry_run",)),
    Rule("budget", lambda j: j.budget is None or parse_budget(j.budget) is not None),
)  # fmt: skip
#: Fields that may change when a run is resumed: how many trials, and where they run.
RESUMABLE = tuple(s.name for s in settings_of(JobSpec) if s.resumable)


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
