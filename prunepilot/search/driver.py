"""The search driver: the only writer of the Optuna study (ask -> screen -> submit -> tell)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Hashable
from typing import Any

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from prunepilot.budget import BudgetLimit, format_cost
from prunepilot.policies import Policy
from prunepilot.search import pareto
from prunepilot.search.executors import TrialExecutor, TrialOutcome
from prunepilot.search.screen import BudgetScreen
from prunepilot.search.space import SearchSpace
from prunepilot.search.study import abandon, warm_start

#: Sampled policies rejected in a row by the budget screen before the last one is repaired.
MAX_REJECTIONS = 5


def _reject(study: optuna.Study, trial: optuna.Trial, predicted: float, budget: BudgetLimit) -> None:
    """Ends an untrained trial predicted over budget: PRUNED, with the predicted excess."""
    trial.set_user_attr("screened", {"predicted": predicted, "metric": budget.cost})
    trial.set_constraint("budget", budget.excess(predicted))
    study.tell(trial, state=TrialState.PRUNED)


def finished_count(study: optuna.Study) -> int:
    """Trials that ran to an end (interrupted trials, re-enqueued, do not count)."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        if not t.user_attrs.get("interrupted")
    )


def run_search(
    study: optuna.Study,
    executor: TrialExecutor,
    space: SearchSpace,
    budget: BudgetLimit,
    n_trials: int,
    timeout: float | None = None,
    progress: bool = True,
    screen: BudgetScreen | None = None,
    fill: bool = False,
) -> int:
    """Runs trials until ``n_trials`` have finished in the study (or ``timeout`` seconds pass).

    Up to ``executor.capacity`` trials are in flight; the driver alone asks and tells, handling
    outcomes in the order trials finish. A failed trial is told FAIL with its reason and the
    search goes on.

    With a ``screen``, a sampled policy predicted to miss the budget is not trained: it is told
    PRUNED with its predicted excess as the budget constraint (so the sampler learns to avoid the
    region) and marked ``screened``. After :data:`MAX_REJECTIONS` such policies in a row, the last
    one is repaired (its ratios raised until it fits, or as far as the space allows) and run
    instead, so the search always moves on. Each trained trial's measurement is passed to
    :meth:`BudgetScreen.observe`. With ``fill`` as well, every sampled policy is brought to the
    budget: one that fits is filled (see :meth:`BudgetScreen.fill`), its ratios lowered until it
    lands just under the budget, the sampled policy kept as ``filled_from``; one predicted over
    budget is raised in the same way (:meth:`BudgetScreen.repair`), kept as ``raised_from``, and
    screened out only when no raise fits. The sampler chooses how pruning is shared out among
    groups and which blocks go; the budget sets how much. (Rejecting policies over budget instead
    teaches the sampler where policies fit, not which fit best: a structure that makes most random
    ratios fit, such as one with blocks removed, wins the search whether or not it is the most
    accurate at the budget.) Enqueued policies (warm starts, the user's policy, re-queued and
    repaired trials) run as given.

    Returns:
        The number of trials run by this call.
    """
    remaining = max(0, n_trials - finished_count(study))
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = tqdm(total=remaining, desc="trials", unit="trial", disable=not progress, leave=True)
    in_flight: dict[Hashable, tuple[optuna.Trial, Policy]] = {}
    asking: optuna.Trial | None = None
    submitted = rejected = 0
    try:
        while True:
            while (
                len(in_flight) < executor.capacity
                and submitted < remaining
                and (deadline is None or time.monotonic() < deadline)
            ):
                asking = trial = study.ask()
                suggested = space.suggest(trial)  # records the trial's params, enqueued ones too
                fixed = trial.user_attrs.get("policy")
                # An enqueued policy runs as given, but removes only blocks this space may remove
                # (another night's run of a shared study may have had others).
                policy = space.within_blocks(Policy.from_dict(fixed)) if fixed else suggested
                origin: dict[str, Any] = {}  # where the policy run came from, when not as sampled
                if screen is not None and not fixed and not screen.fits(policy):
                    raised = screen.repair(policy, space, margin=-screen.tolerance) if fill else None
                    if raised is None or not screen.fits(raised):
                        trial.set_user_attr("policy", policy.to_dict())
                        _reject(study, trial, screen.predict(policy), budget)
                        asking = None
                        rejected += 1
                        if rejected >= MAX_REJECTIONS:
                            repaired = screen.repair(policy, space)
                            warm_start(study, space, [repaired], {"repaired_from": trial.number})
                            rejected = 0
                        continue
                    origin["raised_from"] = policy.to_dict()
                    policy = raised
                rejected = 0
                if screen is not None and fill and not fixed:
                    filled = screen.fill(policy, space)
                    if filled != policy:
                        origin["filled_from"] = policy.to_dict()
                        policy = filled
                if screen is not None:
                    origin["predicted"] = screen.predict(policy)
                # The policy is recorded once, as it runs (a dead driver's trial is re-queued from it).
                for key, value in {"policy": policy.to_dict(), **origin}.items():
                    trial.set_user_attr(key, value)
                in_flight[executor.submit(policy)] = (trial, policy)
                asking = None
                submitted += 1
            if not in_flight:
                break
            handle, outcome = executor.wait_any()
            done, policy = in_flight.pop(handle)
            tell_outcome(study, done, outcome, budget)
            if screen is not None and outcome.result is not None:
                screen.observe(policy, outcome.result.cost(budget.cost))
            bar.update(1)
            bar.set_postfix_str(_progress_text(study, budget), refresh=True)
    except BaseException as exc:
        # Nothing stays RUNNING: trials in flight (and one being asked) end FAIL, re-enqueued.
        reason = (
            "interrupted: the search was stopped during this trial"
            if isinstance(exc, KeyboardInterrupt)
            else f"interrupted: the driver failed ({type(exc).__name__}: {exc})"
        )
        for trial in [*(t for t, _ in in_flight.values()), *([asking] if asking is not None else [])]:
            with contextlib.suppress(Exception):
                abandon(study, space, trial, reason)
        raise
    finally:
        bar.close()
    return submitted


def tell_outcome(
    study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome, budget: BudgetLimit
) -> None:
    """Records a trial's outcome: FAIL with its reason, or its values and budget constraint."""
    trial.set_user_attr("placement", outcome.placement)
    trial.set_user_attr("worker_s", outcome.worker_s)
    trial.set_user_attr("wall_s", outcome.wall_s)
    if outcome.result is None:
        trial.set_user_attr("error", outcome.error or "unknown error")
        if outcome.traceback:
            trial.set_user_attr("traceback", outcome.traceback)
        study.tell(trial, state=TrialState.FAIL)
        return
    result = outcome.result
    trial.set_user_attr("result", result.to_dict())
    trial.set_constraint("budget", budget.excess(result.cost(budget.cost)))
    study.tell(trial, [result.accuracy, result.cost(budget.cost)])


def _progress_text(study: optuna.Study, budget: BudgetLimit) -> str:
    failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    best = pareto.choose(study)
    best_text = (
        f"best within budget: val {best.values[0]:.4g} @ {format_cost(budget.cost, best.values[1])}"
        if best
        else "none within budget yet"
    )
    return f"failed {failed}, {best_text}"
