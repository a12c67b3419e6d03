"""The search driver: the only writer of the Optuna study (ask -> run trial -> tell)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from tqdm import tqdm

from prunepilot.budget import format_metric
from prunepilot.errors import UsageError
from prunepilot.policies import Policy
from prunepilot.search import pareto
from prunepilot.search.executors import TrialExecutor, TrialOutcome
from prunepilot.search.screen import BudgetScreen
from prunepilot.search.space import SearchSpace
from prunepilot.trial import TrialResult

STUDY_NAME = "prunepilot"
STUDY_FILE = "study.journal"
#: Uniform L1 policies enqueued first on a new study (those that fit, when a screen is used).
WARM_START_RATIOS = (0.25, 0.5, 0.7)
#: With a budget the baseline already meets, the share of the run's trials enqueued first as a
#: sweep of uniform policies over the whole range (the run maps the whole trade-off). Half, from
#: ``benchmarks/search_quality.py``: the front's hypervolume was higher than with a quarter on 4 of
#: 5 seeds on each built-in task (the sampler then refines a front that already spans the range).
SWEEP_SHARE = 0.5
#: Sampled policies rejected in a row by the budget screen before the last one is repaired.
MAX_REJECTIONS = 5


@dataclass(frozen=True)
class Objective:
    """What a trial is scored on: the job's metric on validation (toward its direction), ``metric``
    down, ``metric <= limit``.

    Attributes:
        metric: The budget metric (``latency_ms``, ``flops``, ``params``, ``size_bytes``).
        limit: The absolute budget on ``metric``.
    """

    metric: str
    limit: float

    def constraint(self, result: TrialResult) -> float:
        """Relative excess over budget: <= 0 is feasible (Optuna's convention)."""
        return (result.metric(self.metric) - self.limit) / self.limit


class RunStudy:
    """One run's share of an Optuna study.

    Several runs (one a night) may share a study: the sampler learns from all of their trials, while
    counting, recovery, the front and the report see only the trials of this run (tagged with the
    user attribute ``run``; untagged trials of older runs count as this run's). Everything else is
    the study's own (``tell``, ``_storage``, ``study_name`` ...).

    Attributes:
        study: The Optuna study.
        run: The run's name.
    """

    def __init__(self, study: optuna.Study, run: str) -> None:
        self.study, self.run = study, run

    def __getattr__(self, name: str):
        return getattr(self.study, name)

    def get_trials(self, deepcopy: bool = True, states=None) -> list[optuna.trial.FrozenTrial]:
        trials = self.study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if t.user_attrs.get("run", self.run) == self.run]

    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.get_trials(deepcopy=False)

    def other_runs_trials(self) -> list[optuna.trial.FrozenTrial]:
        """Completed trials of the study's other runs (earlier nights)."""
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return [t for t in trials if t.user_attrs.get("run", self.run) != self.run]

    def ask(self) -> optuna.Trial:
        trial = self.study.ask()
        trial.set_user_attr("run", self.run)
        return trial

    def enqueue_trial(self, params: dict, user_attrs: dict | None = None) -> None:
        self.study.enqueue_trial(params, user_attrs={**(user_attrs or {}), "run": self.run})


def open_study(
    run_dir: Path,
    seed: int,
    sampler: optuna.samplers.BaseSampler | None = None,
    storage: str | None = None,
    name: str = STUDY_NAME,
    run: str | None = None,
    direction: str = "maximize",
) -> RunStudy:
    """Creates or loads the study ``name`` and returns the run's share of it (see :class:`RunStudy`).

    Args:
        run_dir: The run directory; the study is kept in ``run_dir/study.journal`` by default.
        seed: Seeds the sampler (re-seeded on resume so it does not replay proposals).
        sampler: Multivariate TPE unless given (benchmarks compare others).
        storage: An Optuna storage URL (``sqlite:///studies.db``, ``postgresql://...``) or a path to
            a journal file, shared by the runs of one study; None for the run's own journal file.
        name: The study's name.
        run: The run's name (``run_dir``'s name by default).
        direction: The direction of the job's metric (the first objective) of a new study:
            ``maximize`` or ``minimize``; the second objective, the budget metric, is minimised. An
            existing study keeps its own (the runner refuses a job whose metric differs).

    Raises:
        UsageError: when the storage cannot be opened.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = open_storage(storage or str(run_dir / STUDY_FILE))
    try:
        existing = len(optuna.load_study(study_name=name, storage=backend).trials)
    except KeyError:
        existing = 0
    # A resumed study re-seeds its sampler so it does not replay the first run's proposals.
    if sampler is None:
        sampler = optuna.samplers.TPESampler(seed=seed + existing, multivariate=True, n_startup_trials=8)
    study = optuna.create_study(
        study_name=name,
        storage=backend,
        directions=[direction, "minimize"],
        sampler=sampler,
        load_if_exists=True,
    )
    return RunStudy(study, run or Path(run_dir).name)


def open_storage(location: str) -> optuna.storages.BaseStorage | str:
    """An Optuna storage from a URL, or a journal file from a path.

    Raises:
        UsageError: naming the URL, when it cannot be opened.
    """
    if "://" not in location:
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(location))
    try:
        return optuna.storages.get_storage(location)
    except Exception as exc:  # noqa: BLE001 - any storage failure is the URL's, reported as one line
        raise UsageError(
            f"Cannot open the study storage {location!r} ({type(exc).__name__}: {exc}); give an "
            "Optuna storage URL such as sqlite:///studies.db or a path to a journal file."
        ) from exc


def recover_interrupted(study: optuna.Study, space: SearchSpace) -> int:
    """Tells FAIL every trial a dead driver left RUNNING and re-enqueues its policy.

    A trial stopped before its policy was fully proposed (no ``policy`` attribute yet) ran no
    work; it is told FAIL and not re-enqueued.

    Returns:
        The number of trials recovered.
    """
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        abandon(study, space, trial, "interrupted: the driver stopped during this trial")
    return len(stale)


def abandon(
    study: optuna.Study, space: SearchSpace, trial: optuna.Trial | optuna.trial.FrozenTrial, reason: str
) -> None:
    """Ends a trial that did not run to its end as FAIL (marked interrupted) and re-enqueues its
    policy, so that a later run computes it.

    The policy is re-enqueued whole, from its ``policy`` attribute: the trial's recorded params may
    be partial (a driver killed while an enqueued trial's params were being recorded)."""
    storage, trial_id = study._storage, trial._trial_id  # noqa: SLF001 - no public API for this
    recorded = storage.get_trial(trial_id)
    storage.set_trial_user_attr(trial_id, "error", reason)
    storage.set_trial_user_attr(trial_id, "interrupted", True)
    study.tell(trial.number, state=TrialState.FAIL)
    if "policy" in recorded.user_attrs:
        warm_start(study, space, [Policy.from_dict(recorded.user_attrs["policy"])])


def warm_start(
    study: optuna.Study, space: SearchSpace, policies: list[Policy], attrs: dict | None = None
) -> None:
    """Enqueues ``policies`` (exactly as given) ahead of the sampler's proposals; ``attrs`` are
    added to each trial's user attributes."""
    for policy in policies:
        study.enqueue_trial(space.params_of(policy), user_attrs={**(attrs or {}), "policy": policy.to_dict()})


def _reject(study: optuna.Study, trial: optuna.Trial, predicted: float, objective: Objective) -> None:
    """Ends an untrained trial predicted over budget: PRUNED, with the predicted excess."""
    trial.set_user_attr("screened", {"predicted": predicted, "metric": objective.metric})
    trial.set_constraint("budget", (predicted - objective.limit) / objective.limit)
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
    objective: Objective,
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
    in_flight: dict[Hashable, optuna.Trial] = {}
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
                trial.set_user_attr("policy", policy.to_dict())
                if screen is not None and not fixed and not screen.fits(policy):
                    raised = screen.repair(policy, space, margin=-screen.tolerance) if fill else None
                    if raised is None or not screen.fits(raised):
                        _reject(study, trial, screen.predict(policy), objective)
                        asking = None
                        rejected += 1
                        if rejected >= MAX_REJECTIONS:
                            repaired = screen.repair(policy, space)
                            warm_start(study, space, [repaired], {"repaired_from": trial.number})
                            rejected = 0
                        continue
                    trial.set_user_attr("raised_from", policy.to_dict())
                    trial.set_user_attr("policy", raised.to_dict())
                    policy = raised
                rejected = 0
                if screen is not None and fill and not fixed:
                    filled = screen.fill(policy, space)
                    if filled != policy:
                        trial.set_user_attr("filled_from", policy.to_dict())
                        trial.set_user_attr("policy", filled.to_dict())
                        policy = filled
                if screen is not None:
                    trial.set_user_attr("predicted", screen.predict(policy))
                in_flight[executor.submit(policy)] = trial
                asking = None
                submitted += 1
            if not in_flight:
                break
            handle, outcome = executor.wait_any()
            done = in_flight.pop(handle)
            tell_outcome(study, done, outcome, objective)
            if screen is not None and outcome.result is not None:
                measured = outcome.result.metric(objective.metric)
                screen.observe(Policy.from_dict(done.user_attrs["policy"]), measured)
            bar.update(1)
            bar.set_postfix_str(_progress_text(study, objective), refresh=True)
    except BaseException as exc:
        # Nothing stays RUNNING: trials in flight (and one being asked) end FAIL, re-enqueued.
        reason = (
            "interrupted: the search was stopped during this trial"
            if isinstance(exc, KeyboardInterrupt)
            else f"interrupted: the driver failed ({type(exc).__name__}: {exc})"
        )
        for trial in [*in_flight.values(), *([asking] if asking is not None else [])]:
            with contextlib.suppress(Exception):
                abandon(study, space, trial, reason)
        raise
    finally:
        bar.close()
    return submitted


def tell_outcome(
    study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome, objective: Objective
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
    trial.set_constraint("budget", objective.constraint(result))
    study.tell(trial, [result.accuracy, result.metric(objective.metric)])


def _progress_text(study: optuna.Study, objective: Objective) -> str:
    failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    best = pareto.choose(study)
    best_text = (
        f"best within budget: val {best.values[0]:.4g} @ {format_metric(objective.metric, best.values[1])}"
        if best
        else "none within budget yet"
    )
    return f"failed {failed}, {best_text}"
