"""Pareto fronts of (metric toward its direction, cost down), and choosing the model within budget.

A study's first objective is the job's metric (top-1 accuracy unless the job names another), maximised
or minimised as the study's first direction says; its second is the budget metric, minimised.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.study import StudyDirection
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


def maximizes(study: optuna.Study) -> bool:
    """Whether the study's metric (its first objective) is maximised."""
    return study.directions[0] == StudyDirection.MAXIMIZE


def pareto_trials(trials: Sequence[FrozenTrial], maximize: bool = True) -> list[FrozenTrial]:
    """The non-dominated ``trials`` (metric toward its direction, cost down), cheapest first."""
    sign = 1.0 if maximize else -1.0
    return [trials[i] for i in pareto_indices([(sign * t.values[0], t.values[1]) for t in trials])]


def best_first(trials: Sequence[FrozenTrial], maximize: bool = True) -> list[FrozenTrial]:
    """``trials`` from the best metric to the worst (ties: the cheaper first)."""
    sign = 1.0 if maximize else -1.0
    return sorted(trials, key=lambda t: (-sign * t.values[0], t.values[1]))


def violation(trial: FrozenTrial) -> float:
    """How far a trial is over budget (0 when within)."""
    return sum(max(v, 0.0) for v in trial.constraints.values())


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def feasible_front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front of the trials within budget, cheapest first."""
    return pareto_trials([t for t in completed(study) if violation(t) == 0], maximizes(study))


def full_front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front of all completed trials, within budget or not, cheapest first."""
    return pareto_trials(completed(study), maximizes(study))


def ranked_front(study: optuna.Study) -> list[FrozenTrial]:
    """The feasible front, best validation metric first (ties: the cheaper first)."""
    return best_first(feasible_front(study), maximizes(study))


def choose(study: optuna.Study) -> FrozenTrial | None:
    """The best validation metric within budget (ties: the cheaper), or None."""
    ranked = ranked_front(study)
    return ranked[0] if ranked else None


def closest(study: optuna.Study) -> FrozenTrial | None:
    """The completed trial nearest the budget (least over it), or None."""
    trials = best_first(completed(study), maximizes(study))
    return min(trials, key=violation) if trials else None


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
