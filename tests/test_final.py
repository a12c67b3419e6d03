"""Choosing the final model among the front's points (``prunepilot.final.finalize_candidates``)."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest
import torch

from prunepilot.budget import BudgetLimit
from prunepilot.evaluators import count_flops
from prunepilot.final import FINAL_CANDIDATES, finalize_candidates
from prunepilot.policies import apply_policy, discover_groups
from prunepilot.search import SearchSpace
from prunepilot.tasks.base import Task
from tests import zoo

SHAPE = (1, 8, 8)
#: The feasible front, best trial score first: each next point is pruned more (cheaper).
RATIOS = (0.1, 0.2, 0.3, 0.5, 0.7)


@pytest.fixture()
def front(trained_tiny):
    space = SearchSpace(tuple(discover_groups(trained_tiny, SHAPE)))
    policies = [space.uniform(r) for r in RATIOS]
    flops = [
        count_flops(apply_policy(trained_tiny, p, SHAPE).model, torch.zeros(1, *SHAPE)) for p in policies
    ]
    trials = [
        optuna.trial.create_trial(
            values=[1.0 - i / 10, float(flops[i])], user_attrs={"policy": policies[i].to_dict()}
        )
        for i in range(len(RATIOS))
    ]
    for number, trial in enumerate(trials):
        trial.number = number
    return trials, flops


def _finalize(trained_tiny, fast_settings, trials, limit):
    train, val, test = zoo.small_digits_data()
    task = Task("tiny", trained_tiny, train, val, test, SHAPE)
    lines: list[str] = []
    settings = replace(fast_settings, finetune_steps=3)
    return finalize_candidates(trials, task, settings, BudgetLimit("flops", limit), lines.append), lines


def test_the_best_candidates_are_finalized_and_no_more_when_one_meets_the_budget(
    trained_tiny, fast_settings, front
):
    trials, flops = front
    limit = (flops[1] + flops[2]) / 2  # the third best fits, the first two do not
    done, lines = _finalize(trained_tiny, fast_settings, trials, limit)
    finalized = done.final["candidates"]
    assert [c["number"] for c in finalized] == list(range(FINAL_CANDIDATES))
    assert [c["budget_met"] for c in finalized] == [False, False, True]
    assert done.trial.number == 2 and done.final["budget_met"] and "test_accuracy" in done.final
    assert not any("cheaper ones" in line for line in lines)


def test_when_no_candidate_meets_the_budget_the_cheaper_front_points_are_tried_in_turn(
    trained_tiny, fast_settings, front
):
    trials, flops = front
    limit = (flops[2] + flops[3]) / 2  # only the two cheapest points fit
    done, lines = _finalize(trained_tiny, fast_settings, trials, limit)
    finalized = done.final["candidates"]
    # The first cheaper point that fits is chosen; the cheapest is not fine-tuned at all.
    assert [c["number"] for c in finalized] == [0, 1, 2, 3]
    assert [c["budget_met"] for c in finalized] == [False, False, False, True]
    assert done.trial.number == 3 and done.final["budget_met"]
    assert sum("trying the cheaper ones" in line for line in lines) == 1


def test_when_no_front_point_meets_the_budget_the_last_one_is_returned_as_missing_it(
    trained_tiny, fast_settings, front
):
    trials, flops = front
    done, _ = _finalize(trained_tiny, fast_settings, trials, min(flops) / 2)
    assert done.trial.number == len(RATIOS) - 1 and not done.final["budget_met"]
    assert len(done.final["candidates"]) == len(RATIOS)
    assert _finalize(trained_tiny, fast_settings, [], min(flops))[0] is None
