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


def widest_gap(
    points: Sequence[tuple[float, float]], low: float, high: float, aimed: Sequence[float] = ()
) -> float:
    """The cost level in the middle of the largest gap under the front of ``points`` (metric toward
    its direction as a score to maximise, cost to minimise), within ``[low, high]``: where one
    more point can add the most hypervolume, as box methods map a front of two objectives.

    Between two neighbours of the front (costs ``c1 < c2``, scores ``s1 < s2``), a point at a cost
    in between can add at most ``(c2 - c1) * (s2 - s1)``. Below the cheapest point of the front,
    the gap reaches down to ``low`` and from the worst score seen up to that point's. A level
    already tried splits the gap it lies in, as a point there would: the cost of a point off the
    front (a try that did not fill the gap), and ``aimed``, the levels earlier trials were brought
    to (done, or under way). So a gap that tries do not fill narrows, and the next level goes
    elsewhere. With no point within the range, the middle of it."""
    inside = [(s, c) for s, c in points if low <= c <= high]
    if not inside:
        return (low + high) / 2
    front = [inside[i] for i in pareto_indices(inside)]  # cheapest first, score rising
    tried = [*(c for _, c in inside), *aimed]
    corners = [(min(s for s, _ in points), low), *front]
    gaps = []  # (area, cheaper cost, dearer cost)
    for (score, cost), (next_score, next_cost) in zip(corners, corners[1:]):
        cuts = sorted({cost, next_cost, *(c for c in tried if cost < c < next_cost)})
        gaps += [((b - a) * (next_score - score), a, b) for a, b in zip(cuts, cuts[1:])]
    if not gaps:
        return (low + high) / 2
    _, cheaper, dearer = max(gaps)
    return (cheaper + dearer) / 2
