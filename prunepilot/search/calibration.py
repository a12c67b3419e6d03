"""Latency calibration: real measurements of a few dozen pruned models, relative to the base model,
on the target device and in the job's runtime; the latency predictor is fit on them."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from prunepilot.errors import UsageError, check_integer
from prunepilot.evaluators import LatencySettings, relative_latency
from prunepilot.inputs import example_batch, on_device
from prunepilot.policies import GroupSetting, Policy, apply_policy
from prunepilot.runtimes import Runtime, get_runtime
from prunepilot.search.latency_model import LatencyPredictor, layer_table
from prunepilot.search.space import SearchSpace

#: Policies measured to calibrate the latency predictor, by default. Over random splits of 76
#: measured policies per built-in task, the held-out error fell from 5.3% (mnist) and 6.3% (digits)
#: at 32 to 3.6% and 4.9% at 64 (one timing each); with CALIBRATION_TIMINGS timings, calibration
#: takes about 60 s (digits) to 120 s (mnist) on 2 cores.
CALIBRATION_SAMPLES = 64
#: Timings of each calibration policy, averaged. One timing of a pruned model of the digits task
#: was off the median of three by 4% on average on a busy machine: over random splits of 128
#: policies timed three times each, the held-out error at 64 policies was 8.3% with one timing,
#: 5.0% with the median of three and 4.1% with their mean. Calibration then took 54 s on digits
#: (``benchmarks/latency_predictor.py``), against about 20 s with one timing.
CALIBRATION_TIMINGS = 3


def structure_only(policy: Policy) -> Policy:
    """The same channel counts, scored by L1 (counts do not depend on the criterion, and L1 needs
    neither gradients nor BatchNorm)."""
    settings = {n: GroupSetting(s.ratio, "l1") for n, s in policy.groups.items()}
    return Policy(settings, policy.round_to, policy.removed_blocks, policy.int8)


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
    timings: int = CALIBRATION_TIMINGS,
    runtime: Runtime | None = None,
) -> Calibration:
    """Measures each policy's pruned model against ``model`` on ``device``, both as they run in
    ``runtime`` (default: PyTorch; an int8 policy's model quantized, on random calibration inputs:
    ranges do not change the time) and timed alongside (see :func:`relative_latency`; the mean
    ratio of ``timings`` timings); ``progress`` (a tqdm bar) is advanced per policy."""
    check_integer("calibrate_latency", "timings", timings, 1)
    runtime = runtime or get_runtime("torch")
    tables, ratios, precisions = [], [], []
    example = example_batch(input_shape, 2, device)
    reference = runtime.deploy(on_device(model, device), example, settings.threads).module
    for policy in policies:
        pruned = pruned_or_none(model, policy, input_shape)
        if pruned is None:  # its pruning breaks the model: nothing to time
            continue
        table = {k: list(v) for k, v in layer_table(pruned, input_shape).items()}
        shipped = runtime.deploy_or_fp32(pruned.to(device), example, settings.threads, policy.int8)
        timed = [
            relative_latency(shipped.module, reference, input_shape, settings, device) for _ in range(timings)
        ]
        tables.append(table)
        ratios.append(sum(timed) / timings)
        precisions.append(shipped.quantized)
        if progress is not None:
            progress.update(1)
    base = {k: list(v) for k, v in layer_table(model, input_shape).items()}
    return Calibration(tables, ratios, base, precisions)
