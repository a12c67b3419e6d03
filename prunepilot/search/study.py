"""The study's lifecycle: storage, opening and resuming, a run's share of a shared study, recovery of
trials a dead driver left running, warm starts and the previous runs' front.

Optuna is the source of truth: everything a run needs to resume is in its study.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from prunepilot.errors import UsageError
from prunepilot.evaluators.metric import DEFAULT_METRIC_NAME
from prunepilot.policies import Policy
from prunepilot.search.journal import open_journal
from prunepilot.search.pareto import maximizes, pareto_trials, violation
from prunepilot.search.space import SearchSpace
from prunepilot.settings.surface import named

__all__ = [
    "STUDIES_FILE",
    "STUDY_FILE",
    "STUDY_NAME",
    "RunStudy",
    "abandon",
    "check_study_metric",
    "open_storage",
    "open_study",
    "previous_front",
    "recover_interrupted",
    "storage_location",
    "unique",
    "warm_start",
]

STUDY_NAME = "prunepilot"
STUDY_FILE = "study.journal"
#: The journal shared by the runs of a named study (``--study``) in one ``--out`` folder.
STUDIES_FILE = "studies.journal"


class RunStudy:
    """One run's share of an Optuna study.

    Several runs (one a night) may share a study: the sampler learns from all of their trials, while
    counting, recovery, the front and the report see only the trials of this run (tagged with the
    user attribute ``run``; untagged trials of older runs count as this run's). A study in the run's
    own journal is the run's alone, whatever its folder is called now (a renamed or copied run keeps
    its trials). Everything else is the study's own (``tell``, ``_storage``, ``study_name`` ...).

    Attributes:
        study: The Optuna study.
        run: The run's name.
        shared: Whether other runs may share the study (else every trial is this run's).
    """

    def __init__(self, study: optuna.Study, run: str, shared: bool = True) -> None:
        self.study, self.run, self.shared = study, run, shared

    def __getattr__(self, name: str):
        return getattr(self.study, name)

    def get_trials(self, deepcopy: bool = True, states=None) -> list[optuna.trial.FrozenTrial]:
        trials = self.study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if not self.shared or t.user_attrs.get("run", self.run) == self.run]

    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.get_trials(deepcopy=False)

    def other_runs_trials(self) -> list[optuna.trial.FrozenTrial]:
        """Completed trials of the study's other runs (earlier nights)."""
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return [t for t in trials if self.shared and t.user_attrs.get("run", self.run) != self.run]

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
    create: bool = True,
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
            existing study keeps its own (``pipeline.search.open_run_study`` refuses a job whose
            metric differs).
        create: Create the study when the storage lacks it (else :class:`KeyError`).

    Raises:
        UsageError: when the storage cannot be opened.
        KeyError: when the study is missing and ``create`` is False.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = open_storage(storage or str(run_dir / STUDY_FILE))
    try:
        existing = len(optuna.load_study(study_name=name, storage=backend).trials)
    except KeyError:
        if not create:
            raise
        existing = None
    # A resumed study re-seeds its sampler so it does not replay the first run's proposals.
    if sampler is None:
        sampler = optuna.samplers.TPESampler(
            seed=seed + (existing or 0), multivariate=True, n_startup_trials=8
        )
    if existing is None:  # another run of a shared study may create it first: loaded then
        study = optuna.create_study(
            study_name=name, storage=backend, directions=[direction, "minimize"], sampler=sampler,
            load_if_exists=True,
        )  # fmt: skip
    else:  # loaded, not created again: reading a run (report, export) writes nothing to its journal
        study = optuna.load_study(study_name=name, storage=backend, sampler=sampler)
    return RunStudy(study, run or Path(run_dir).name, shared=storage is not None)


def open_storage(location: str) -> optuna.storages.BaseStorage | str:
    """An Optuna storage from a URL, or a journal file from a path (see :func:`open_journal`).

    Raises:
        UsageError: naming the URL, when it cannot be opened; naming the line of a damaged journal.
    """
    if "://" not in location:
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        return open_journal(location)
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


def check_study_metric(study: optuna.Study, metric: str, direction: str) -> None:
    """Raises ``UsageError`` when ``study`` scores trials with another metric or direction than
    ``metric`` / ``direction`` (values of two metrics cannot share a front). A study without the
    record is top-1 accuracy's when it has trials."""
    have = study.directions[0].name.lower()
    default = DEFAULT_METRIC_NAME if study.get_trials(deepcopy=False) else None
    stored = study.user_attrs.get("metric", default)
    if have != direction or stored not in (None, metric):
        raise UsageError(
            f"The study {study.study_name!r} {have}s the metric {stored or metric!r} but this job "
            f"{direction}s {metric!r}; use another {named('study')} name, or the study's metric.",
            "metric",
        )


def storage_location(storage: str | None, out: str, study: str | None) -> str | None:
    """The study's storage: ``storage`` when given; for a named study, one journal shared by the
    runs in ``out``; else None (the run's own journal file)."""
    if storage:
        return storage
    return str(Path(out) / STUDIES_FILE) if study else None


def previous_front(study: RunStudy) -> list[Policy]:
    """The policies of the feasible front of the study's earlier runs (nightly warm start)."""
    trials = [t for t in study.other_runs_trials() if violation(t) == 0 and "policy" in t.user_attrs]
    front = pareto_trials(trials, maximizes(study))
    return [Policy.from_dict(t.user_attrs["policy"]) for t in front]


def unique(policies: list[Policy]) -> list[Policy]:
    """``policies`` without repeats, in order."""
    kept: list[Policy] = []
    for policy in policies:
        if policy not in kept:
            kept.append(policy)
    return kept
