"""Pareto fronts of (accuracy up, cost down), and choosing the model within budget."""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState


def pareto_indices(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points of (accuracy to maximise, cost to minimise)."""
    front = []
    for i, (acc_i, cost_i) in enumerate(points):
        dominated = any(
            acc_j >= acc_i and cost_j <= cost_i and (acc_j > acc_i or cost_j < cost_i)
            for j, (acc_j, cost_j) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][1])


def violation(trial: FrozenTrial) -> float:
    """How far a trial is over budget (0 when within)."""
    return sum(max(v, 0.0) for v in trial.constraints.values())


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def feasible_front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front of the trials within budget, cheapest first."""
    trials = [t for t in completed(study) if violation(t) == 0]
    return [trials[i] for i in pareto_indices([(t.values[0], t.values[1]) for t in trials])]


def full_front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front of all completed trials, within budget or not, cheapest first."""
    trials = completed(study)
    return [trials[i] for i in pareto_indices([(t.values[0], t.values[1]) for t in trials])]


def choose(study: optuna.Study) -> FrozenTrial | None:
    """The best validation accuracy within budget (ties: the cheaper), or None."""
    front = feasible_front(study)
    if not front:
        return None
    return max(front, key=lambda t: (t.values[0], -t.values[1]))


def closest(study: optuna.Study) -> FrozenTrial | None:
    """The completed trial nearest the budget (least over it), or None."""
    trials = completed(study)
    return min(trials, key=lambda t: (violation(t), -t.values[0])) if trials else None


def hypervolume(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by (accuracy up, cost down) ``points`` and bounded by ``reference``
    (an accuracy floor and a cost ceiling); points beyond the reference add nothing."""
    inside = [(a, c) for a, c in points if a > reference[0] and c < reference[1]]
    front = [inside[i] for i in pareto_indices(inside)]  # cheapest first, accuracy rising
    area = 0.0
    for i, (accuracy, cost) in enumerate(front):
        next_cost = front[i + 1][1] if i + 1 < len(front) else reference[1]
        area += (next_cost - cost) * (accuracy - reference[0])
    return area
