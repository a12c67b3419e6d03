"""Latency calibration: real measurements of a few dozen pruned models, relative to the base model,
on the target device and in the job's runtime; the latency predictor is fit on them."""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from prunepilot.errors import UsageError, check_integer
from prunepilot.evaluators import LatencySettings
from prunepilot.evaluators.latency import time_models
from prunepilot.inputs import example_batch, on_device
from prunepilot.policies import GroupSetting, Policy, apply_policy
from prunepilot.runtimes import Runtime, get_runtime
from prunepilot.search.latency_model import LatencyPredictor, layer_table
from prunepilot.search.space import SearchSpace

#: Policies measured to calibrate the latency predictor, by default: few, since every trained
#: trial's measurement refits the predictor (see ``BudgetScreen.observe``). Timed in batches (below),
#: 32 policies reached a held-out error of 2.9% on digits, as 64 did (3.0%), in half the time.
CALIBRATION_SAMPLES = 32
#: Pruned models timed in one measurement with the base model: the base model's passes, the
#: costliest, are shared among them (rounds alternate among all of them, so a machine whose speed
#: drifts slows them alike, as in :func:`relative_latency`). Against timing each policy with the
#: base model three times, calibration is 4 to 5 times faster; its held-out error was as low in one
#: run and higher in another (docs/benchmarks.md, "Fast to a result").
CALIBRATION_BATCH = 8
#: Timings of each batch: at least the first, then more until each ratio's standard error is
#: within CALIBRATION_ERROR of it, at most the second.
CALIBRATION_TIMINGS = (2, 3)
#: The standard error (a share of the ratio) at which a batch's ratios are tight enough.
CALIBRATION_ERROR = 0.02
#: Timed passes of each model in one timing, at most (and warm-up passes before the first): a
#: ratio's error is mostly the machine's drift between timings, not the passes' spread.
CALIBRATION_REPEATS, CALIBRATION_WARMUP = 15, 5


def structure_only(policy: Policy) -> Policy:
    """The same channel counts, scored by L1 (counts do not depend on the criterion, and L1 needs
    neither gradients nor BatchNorm)."""
    settings = {n: GroupSetting(s.ratio, "l1") for n, s in policy.groups.items()}
    return replace(policy, groups=settings)


@dataclass(frozen=True)
class Calibration:
    """Real latency measurements of pruned models, relative to the base model (plain data).

    Attributes:
        tables: Each measured model's layer table (see :func:`layer_table`).
        ratios: Each model's latency divided by the base model's (fp32), timed alongside.
        base: The base model's layer table.
        int8: Whether each model was timed quantized to int8 (empty: none was).
    """

    tables: list[dict[str, list]]
    ratios: list[float]
    base: dict[str, list]
    int8: list[bool] = field(default_factory=list)

    @property
    def precisions(self) -> list[bool]:
        """Whether each measured model was int8."""
        return self.int8 or [False] * len(self.ratios)

    def predictor(self, relative: bool = True, int8: bool = False) -> LatencyPredictor:
        """A predictor fit on the measurements of one precision (see :meth:`LatencyPredictor.fit`)."""
        chosen = [i for i, q in enumerate(self.precisions) if q == int8]
        as_tuples = [{k: tuple(v) for k, v in self.tables[i].items()} for i in chosen]
        base = {k: tuple(v) for k, v in self.base.items()}
        return LatencyPredictor.fit(base, as_tuples, [self.ratios[i] for i in chosen], relative)

    def to_dict(self) -> dict[str, Any]:
        return {"tables": self.tables, "ratios": self.ratios, "base": self.base, "int8": self.precisions}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(data["tables"], data["ratios"], data["base"], list(data.get("int8", [])))


def calibration_policies(space: SearchSpace, samples: int, seed: int = 0) -> list[Policy]:
    """Policies that cover the space: a quarter uniform (evenly spaced ratios), the rest random
    (each of the space's blocks removed with probability one half, so that the predictor sees
    what a block's layers cost however few channels they keep). In a space that searches the
    precision, every other policy is int8 (each precision gets a predictor of its own)."""
    rng = random.Random(seed)
    grid = space.grid_ratios
    steps = len(grid) - 1
    roundings = list(space.round_to_choices) or [space.round_to]
    uniform = max(2, samples // 4)
    policies = [space.uniform(grid[round(i * steps / (uniform - 1))]) for i in range(uniform)]
    while len(policies) < samples:
        ratios = {g.name: grid[rng.randint(0, steps)] for g in space.groups}
        removed = tuple(b for b in space.blocks if rng.random() < 0.5)
        policies.append(
            Policy({n: GroupSetting(r) for n, r in ratios.items()}, rng.choice(roundings), removed)
        )
    if space.quantize == "search":
        return [replace(p, int8=bool(i % 2)) for i, p in enumerate(policies[:samples])]
    return [replace(p, int8=space.quantize == "int8") for p in policies[:samples]]


def pruned_or_none(model: nn.Module, policy: Policy, input_shape: tuple[int, ...]) -> nn.Module | None:
    """The structure of ``policy`` applied to ``model``, or None when pruning breaks the model (a
    layer Torch-Pruning does not handle, at this ratio)."""
    try:
        return apply_policy(model, structure_only(policy), input_shape).model
    except UsageError:
        raise
    except Exception:  # noqa: BLE001 - such a policy is screened out, not a crash of the search
        return None


def calibrate_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    policies: list[Policy],
    settings: LatencySettings,
    progress: Any = None,
    device: str = "cpu",
    timings: tuple[int, int] = CALIBRATION_TIMINGS,
    runtime: Runtime | None = None,
    batch: int = CALIBRATION_BATCH,
) -> Calibration:
    """Measures each policy's pruned model against ``model`` on ``device``, both as they run in
    ``runtime`` (default: PyTorch; an int8 policy's model quantized, on random calibration inputs:
    ranges do not change the time).

    Policies are timed ``batch`` at a time with the base model, in alternating rounds (see
    :func:`time_models`); each model's ratio to the base model is the mean over the batch's
    timings: at least ``timings[0]``, then more until every ratio's standard error is within
    :data:`CALIBRATION_ERROR` of it, at most ``timings[1]``. ``progress`` (a tqdm bar) is advanced
    per policy."""
    low, high = timings
    check_integer("calibrate_latency", "timings[0]", low, 1)
    check_integer("calibrate_latency", "timings[1]", high, low)
    check_integer("calibrate_latency", "batch", batch, 1)
    runtime = runtime or get_runtime("torch")
    tables, ratios, precisions = [], [], []
    example = example_batch(input_shape, 2, device)
    reference = runtime.deploy(on_device(model, device), example, settings.threads).module
    settings = replace(settings, repeats=min(settings.repeats, CALIBRATION_REPEATS),
                       warmup=min(settings.warmup, CALIBRATION_WARMUP))  # fmt: skip
    # Models already warm are re-warmed by time_models' two passes before the timed rounds.
    warm = replace(settings, warmup=min(settings.warmup, 2))
    for start in range(0, len(policies), batch):
        shipped = []
        for policy in policies[start : start + batch]:
            pruned = pruned_or_none(model, policy, input_shape)
            if pruned is None:  # its pruning breaks the model: nothing to time
                if progress is not None:
                    progress.update(1)
                continue
            tables.append({k: list(v) for k, v in layer_table(pruned, input_shape).items()})
            shipped.append(runtime.deploy_or_fp32(pruned.to(device), example, settings.threads, policy.int8))
        if not shipped:
            continue
        timed: list[list[float]] = [[] for _ in shipped]
        while len(timed[0]) < high and (len(timed[0]) < low or not _tight(timed)):
            first, *others = time_models(
                [reference, *(s.module for s in shipped)], input_shape,
                settings if not timed[0] else warm, device,
            )  # fmt: skip
            for row, latency in zip(timed, others):
                row.append(latency / first)
        ratios += [statistics.fmean(row) for row in timed]
        precisions += [s.quantized for s in shipped]
        if progress is not None:
            progress.update(len(shipped))
    base = {k: list(v) for k, v in layer_table(model, input_shape).items()}
    return Calibration(tables, ratios, base, precisions)


def _tight(timed: list[list[float]]) -> bool:
    """Whether every model's mean ratio has a standard error within :data:`CALIBRATION_ERROR` of it."""
    limit = CALIBRATION_ERROR
    return all(statistics.stdev(row) / math.sqrt(len(row)) <= limit * statistics.fmean(row) for row in timed)
