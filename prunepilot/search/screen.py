"""Budget-aware sampling: a policy's budget's cost, known before any training.

FLOPs, parameters and size are exact (counted on the pruned, untrained model). Latency is predicted
by a :class:`LatencyPredictor` calibrated on real measurements of a few dozen policies on this
machine; trials, front points and the final model are still measured for real.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from prunepilot.budget import BudgetLimit
from prunepilot.evaluators import (
    count_flops,
    count_params,
)
from prunepilot.inputs import example_batch
from prunepilot.policies import GroupSetting, Policy
from prunepilot.policies.ranking import global_ratios, group_scores
from prunepilot.runtimes import get_runtime
from prunepilot.search.calibration import pruned_or_none, structure_only
from prunepilot.search.latency_model import LatencyPredictor, layer_table
from prunepilot.search.space import SearchSpace

#: Trained trials measured before their latencies correct the predictor's (see BudgetScreen.observe).
MIN_OBSERVED = 3
#: The measured trials that set the correction: the latest this many predicted near the budget.
NEAREST_OBSERVED = 8
#: "Near the budget": a prediction within this share of it.
NEAR_BUDGET = 0.25
#: The quantile of measured / predicted latency the correction takes: a policy predicted just
#: within the budget then measures over it about 1 time in 10 (the share of infeasible trained
#: trials the search allows).
FEASIBLE_QUANTILE = 0.9


@dataclass
class BudgetScreen:
    """Predicts a policy's budget's cost without training, to reject or repair it first.

    Attributes:
        model: The base model.
        input_shape: Shape of one input sample.
        budget: The budget (its cost: ``latency_ms``, ``flops``, ``params`` or ``size_bytes``).
        predictor: Required when the budget bounds ``latency_ms``; refit on each trial :meth:`observe`
            is given.
        baseline_ms: The base model's latency (predictions are relative to it).
        observed: For each trained trial seen by :meth:`observe`: the predictor's prediction
            before it was refit on that trial, and the measured latency divided by it.
        int8_predictor: The predictor of int8 policies' latency, when the space searches the
            precision.
        runtime: The runtime whose size a size budget counts (int8 weights as stored).
        size_measure: How a size budget counts (see :data:`~prunepilot.runtimes.base.SIZE_MEASURES`).
        observed_int8: For each entry of ``observed``, whether it was an int8 policy measured
            against ``int8_predictor``.
        calibration: Where the predictor's calibration came from, for the report (``source``:
            ``measured``, ``cache`` or ``run``; ``seconds`` it took to measure).
    """

    model: nn.Module
    input_shape: tuple[int, ...]
    budget: BudgetLimit
    predictor: LatencyPredictor | None = None
    baseline_ms: float | None = None
    observed: list[tuple[float, float]] = field(default_factory=list)
    int8_predictor: LatencyPredictor | None = None
    runtime: str = "torch"
    size_measure: str = "saved"
    observed_int8: list[bool] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def tolerance(self) -> float:
        """The predictors' relative error (cross-validated, the larger) for latency, 0 for the
        exact costs: how far under the budget :meth:`fill` aims."""
        if self.budget.cost != "latency_ms" or self.predictor is None:
            return 0.0
        return max(p.cv_mape for p in (self.predictor, self.int8_predictor) if p is not None)

    def __post_init__(self) -> None:
        if self.budget.cost == "latency_ms" and (self.predictor is None or self.baseline_ms is None):
            raise ValueError("A latency budget screen needs a predictor and the baseline's latency.")

    @property
    def correction(self) -> float:
        """The correction of fp32 policies' predictions (see :meth:`correction_for`)."""
        return self.correction_for(False)

    def correction_for(self, int8: bool) -> float:
        """The factor applied to the predictor's latencies: once :data:`MIN_OBSERVED` trials were
        measured, the :data:`FEASIBLE_QUANTILE` quantile of measured / predicted over the latest
        :data:`NEAREST_OBSERVED` trials predicted within :data:`NEAR_BUDGET` of the budget (or,
        with fewer than :data:`MIN_OBSERVED` of those, the ones predicted closest to it), else 1.

        Near the budget is where the search spends its trials and where the predictor's error
        decides what is trained; the latest trials are the kind of policy the sampler now
        proposes (the predictor's error depends on how a policy prunes: the first trials, uniform
        warm starts and repairs, are no guide to later ones); the high quantile errs towards
        screening out, so that few trained trials measure over budget.

        Each precision has its own predictor, and its own error: the trials counted are those of
        the precision ``int8`` names (all trials while fewer than :data:`MIN_OBSERVED` are)."""
        same = [o for o, q in zip(self.observed, self.observed_int8) if q == int8]
        observed = same if len(same) >= MIN_OBSERVED else self.observed
        if len(observed) < MIN_OBSERVED:
            return 1.0
        near = [o for o in observed if abs(self.budget.excess(o[0])) <= NEAR_BUDGET][-NEAREST_OBSERVED:]
        if len(near) < MIN_OBSERVED:
            near = sorted(observed, key=lambda o: abs(math.log(o[0] / self.budget.limit)))[:NEAREST_OBSERVED]
        return float(np.quantile([ratio for _, ratio in near], FEASIBLE_QUANTILE))

    def predict(self, policy: Policy) -> float:
        """The policy's budget's cost: exact for FLOPs, parameters and size; predicted for latency
        (times :meth:`correction_for` its precision)."""
        if self.budget.cost != "latency_ms":
            return self._predicted(policy)
        return self._predicted(policy) * self.correction_for(policy.int8 and self.int8_predictor is not None)

    def observe(self, policy: Policy, measured: float) -> None:
        """Learns from a trained trial's measured budget's cost (exact costs need nothing).

        The predictor is refit on its calibration and every measured trial: calibration covers
        the whole space, while trials lie where the search looks (near the budget), where the
        predictor must be right. Calibration times pruned models in the driver; trials are timed
        where they run, perhaps on other machines of a cluster and under other load. Once
        :data:`MIN_OBSERVED` trials are measured, predictions are also scaled by
        :attr:`correction`, the error the predictor made on the latest trials before it had seen
        them, so that a predictor that is off near the budget neither screens out policies that
        would fit nor lets through policies that miss."""
        if self.budget.cost == "latency_ms" and measured > 0:
            assert self.predictor is not None and self.baseline_ms is not None
            predicted = self._predicted(policy)
            self.observed.append((predicted, measured / predicted))
            self.observed_int8.append(policy.int8 and self.int8_predictor is not None)
            # The predictor holds every measurement it was fit on: calibration, then earlier trials.
            update = [self._structure(policy)], [measured / self.baseline_ms]
            if policy.int8 and self.int8_predictor is not None:
                self.int8_predictor = self.int8_predictor.refit(*update)
            else:
                self.predictor = self.predictor.refit(*update)

    def _structure(self, policy: Policy) -> Any:
        """What the budget's cost needs of the pruned, untrained model, computed once per channel
        counts: its layer table for latency, else the exact cost."""
        key = structure_only(policy).to_json()
        if key not in self._cache:
            pruned = pruned_or_none(self.model, policy, self.input_shape)
            if pruned is None:
                self._cache[key] = None
            elif self.budget.cost == "latency_ms":
                self._cache[key] = layer_table(pruned, self.input_shape)
            elif self.budget.cost == "size_bytes":
                example = example_batch(self.input_shape, 2)
                deployed = get_runtime(self.runtime).deploy_or_fp32(pruned, example, 1, policy.int8)
                self._cache[key] = replace(deployed, size_measure=self.size_measure).size_bytes
            else:
                self._cache[key] = _static_metric(pruned, self.input_shape, self.budget.cost)
        return self._cache[key]

    def _predicted(self, policy: Policy) -> float:
        if self._structure(policy) is None:
            return math.inf  # a policy whose pruning breaks the model never fits
        if self.budget.cost == "latency_ms":
            assert self.predictor is not None and self.baseline_ms is not None
            predictor = self.int8_predictor if policy.int8 and self.int8_predictor else self.predictor
            return self.baseline_ms * predictor.predict(self._structure(policy))
        return float(self._structure(policy))

    def fits(self, policy: Policy, margin: float = 0.0) -> bool:
        """Whether ``policy`` is predicted within the budget, or up to ``margin`` above it (a share
        of the budget; negative keeps that share below it)."""
        return self.budget.fits(self.predict(policy), margin)

    def fill(self, policy: Policy, space: SearchSpace) -> Policy:
        """``policy`` with its ratios lowered as far as the budget allows (every group moved the
        same share of its way toward ``space.ratio_low``, ratios rounded down onto the grid), so
        that its prediction lands just under the budget: :attr:`tolerance` below it, so that few
        filled policies measure over budget. A policy that does not fit that way is returned as
        given.

        Accuracy falls with pruning, so the best model within a budget prunes no more than it
        must (AMC bounds each layer's action the same way): filling spends the budget's slack on
        accuracy, while the sampler still chooses how the pruning is shared out among groups."""
        candidates = [_toward_low(policy, space, 1 - t / 16) for t in range(17)]
        fitting = _first_fitting(candidates, self, -self.tolerance)
        return fitting if fitting is not None else policy

    def repair(self, policy: Policy, space: SearchSpace, margin: float = 0.0) -> Policy:
        """The least raise of ``policy``'s ratios toward ``space.max_ratio`` (every group moved the
        same share of its way, ratios rounded up onto the grid, its blocks kept or removed as they
        are) that fits (``margin`` as in :meth:`fits`); else every ratio at ``space.max_ratio``
        with every removable block removed, when that fits; when nothing is predicted to fit, that
        smallest model of the space (the closest the space gets; measured, it may still fit)."""
        candidates = [_toward_max(policy, space, t / 16) for t in range(17)]
        if set(space.blocks) - set(policy.removed_blocks):
            candidates.append(replace(candidates[-1], removed_blocks=tuple(space.blocks)))
        return _first_fitting(candidates, self, margin) or candidates[-1]

    def uniform_within(
        self, space: SearchSpace, removed_blocks: tuple[str, ...] = (), int8: bool | None = None,
        sparsity: float = 0.0,
    ) -> Policy | None:
        """The uniform policy of the smallest ratio on the grid that fits (the hand-made recipe),
        with ``removed_blocks`` removed and ``sparsity`` (int8 as :meth:`SearchSpace.uniform` has it)."""
        uniform = [
            replace(space.uniform(r, int8=int8), removed_blocks=removed_blocks, sparsity=sparsity)
            for r in space.grid_ratios
        ]  # fmt: skip
        return _first_fitting(uniform, self)

    def global_within(self, space: SearchSpace, criterion: str = "lamp") -> Policy | None:
        """A global-importance policy that fits: one threshold on LAMP scores across all groups."""
        scores = group_scores(self.model, self.input_shape, [g.name for g in space.groups], criterion)
        if not scores:
            return None
        thresholds = torch.cat(list(scores.values())).sort().values.tolist()
        candidates = []
        for threshold in thresholds[:: max(1, len(thresholds) // 64)] + [math.inf]:
            ratios = global_ratios(scores, threshold)
            settings = {}
            for group in space.groups:
                ratio = _on_grid_up(ratios.get(group.name, 0.0), space)
                allowed = space.criteria_for(group)
                settings[group.name] = GroupSetting(ratio, criterion if criterion in allowed else allowed[0])
            round_to = space.round_to_choices[0] if space.round_to_choices else space.round_to
            candidates.append(Policy(settings, round_to, int8=space.quantize == "int8"))
        return _first_fitting(candidates, self)


def _first_fitting(candidates: list[Policy], screen: BudgetScreen, margin: float = 0.0) -> Policy | None:
    """The first candidate that fits (see :meth:`BudgetScreen.fits`), by bisection (candidates are
    ordered by growing pruning)."""
    if not candidates or not screen.fits(candidates[-1], margin):
        return None
    low, high = 0, len(candidates) - 1  # candidates[high] fits
    while low < high:
        middle = (low + high) // 2
        if screen.fits(candidates[middle], margin):
            high = middle
        else:
            low = middle + 1
    return candidates[high]


def _on_grid_up(ratio: float, space: SearchSpace) -> float:
    steps = math.ceil((ratio - space.ratio_low) / space.ratio_step - 1e-9)
    return round(min(max(space.ratio_low + steps * space.ratio_step, space.ratio_low), space.max_ratio), 6)


def _on_grid_down(ratio: float, space: SearchSpace) -> float:
    steps = math.floor((ratio - space.ratio_low) / space.ratio_step + 1e-9)
    return round(min(max(space.ratio_low + steps * space.ratio_step, space.ratio_low), space.max_ratio), 6)


def _toward_low(policy: Policy, space: SearchSpace, share: float) -> Policy:
    """Every group's ratio moved ``share`` of its way down to ``space.ratio_low``."""
    settings = {}
    for group in space.groups:
        setting = policy.groups.get(group.name, GroupSetting(0.0, space.criteria_for(group)[0]))
        ratio = setting.ratio - share * max(setting.ratio - space.ratio_low, 0.0)
        settings[group.name] = GroupSetting(_on_grid_down(ratio, space), setting.criterion)
    return replace(policy, groups=settings)


def _toward_max(policy: Policy, space: SearchSpace, share: float) -> Policy:
    settings = {}
    for group in space.groups:
        setting = policy.groups.get(group.name, GroupSetting(0.0, space.criteria_for(group)[0]))
        ratio = setting.ratio + share * max(space.max_ratio - setting.ratio, 0.0)
        settings[group.name] = GroupSetting(_on_grid_up(ratio, space), setting.criterion)
    return replace(policy, groups=settings)


def _static_metric(model: nn.Module, input_shape: tuple[int, ...], metric: str) -> float:
    if metric == "flops":
        return float(count_flops(model, example_batch(input_shape)))
    return float(count_params(model))
