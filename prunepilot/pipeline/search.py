"""Stage two of a job: the search. The budget screen (a latency budget calibrates its predictor
first), the study (opened or resumed, interrupted trials recovered), warm starts, where trials run,
and the driver's loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from tqdm import tqdm

from prunepilot.budget import BudgetLimit, format_cost
from prunepilot.errors import Interrupted, UsageError, cut
from prunepilot.evaluators.metric import Metric
from prunepilot.phases import PhaseClock
from prunepilot.pipeline.prepare import PreparedJob
from prunepilot.policies import Policy
from prunepilot.rundir import RunDir, resume_command_line
from prunepilot.runtimes import get_runtime
from prunepilot.search import (
    BudgetScreen,
    Calibration,
    InProcessExecutor,
    RayExecutor,
    RunStudy,
    SearchSpace,
    TrialExecutor,
    open_storage,
    open_study,
    recover_interrupted,
    run_search,
    warm_start,
)
from prunepilot.search.calibration import calibrate_latency, calibration_policies
from prunepilot.search.calibration_store import calibration_key, load_calibration, save_calibration
from prunepilot.search.journal import check_journal
from prunepilot.search.promotion import promote_front
from prunepilot.search.study import (
    STUDY_FILE,
    STUDY_NAME,
    check_study_metric,
    previous_front,
    storage_location,
    unique,
)
from prunepilot.spec import JobSpec
from prunepilot.trial import TrialSettings

__all__ = ["SearchOutcome", "check_shared_study", "open_run_study", "search_stage"]

#: Uniform L1 policies enqueued first on a new study (those that fit, when a screen is used).
WARM_START_RATIOS = (0.25, 0.5, 0.7)
#: With a budget the baseline already meets, the share of the run's trials enqueued first as a
#: sweep of uniform policies over the whole range (the run maps the whole trade-off). Half, from
#: ``benchmarks/search_quality.py``: the front's hypervolume was higher than with a quarter on 4 of
#: 5 seeds on each built-in task (the sampler then refines a front that already spans the range).
SWEEP_SHARE = 0.5
#: The latency predictor's calibration measurements, in the run directory.
CALIBRATION_FILE = "latency_calibration.json"


@dataclass(frozen=True)
class SearchOutcome:
    """What the search stage leaves for the finish.

    Attributes:
        study: The run's share of its study.
        screen: The budget screen, None without one.
        settings: The trial settings the trials ran with.
        trials_run: Trials run by this call (a resumed run counts only its own).
        wall_s: Seconds the search took.
    """

    study: RunStudy
    screen: BudgetScreen | None
    settings: TrialSettings
    trials_run: int
    wall_s: float


def search_stage(
    prepared: PreparedJob,
    run: RunDir,
    baseline: dict[str, Any],
    budget: BudgetLimit,
    start_policy: Policy | None,
    progress: bool,
    log: Callable[[str], None],
    clock: PhaseClock | None = None,
) -> SearchOutcome:
    """Runs the search of a prepared job in ``run`` until its trials are done (``clock`` counts
    the calibration's and the trials' wall time).

    Raises:
        Interrupted: on Ctrl-C (finished trials are kept; the run can be resumed).
    """
    spec, space = prepared.spec, prepared.space
    settings = prepared.with_reference(baseline)
    # A budget the baseline already meets does not bind: the run maps the whole trade-off, from a
    # sweep of uniform policies, and fills no policy up to the budget (that would undo its pruning).
    binding = not budget.fits(baseline[budget.cost])
    if not binding:
        log(
            f"The baseline already meets the budget {budget.text!r}: searching the whole trade-off "
            "(a sweep of uniform policies first; no policy filled up to the budget)."
        )
    clock = clock or PhaseClock()
    study = open_run_study(spec, run)  # a damaged journal is refused before anything is measured
    with clock.phase("calibration"):
        screen = _screen(prepared, run, baseline, budget, progress, log) if spec.screen else None
    recovered = recover_interrupted(study, space)
    if recovered:
        log(f"Recovered {recovered} trial(s) left running by an interrupted run; re-queued them.")
    if screen is not None:  # a resumed run's screen learns again from its trials so far
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            policy, result = Policy.from_dict(trial.user_attrs["policy"]), trial.user_attrs["result"]
            screen.observe(policy, result[budget.cost])
    if not study.trials:
        previous = previous_front(study)
        if previous:
            log(f"Study {study.study_name!r}: warm-starting from its last front ({len(previous)} policies).")
        # Within the space's bounds, and no more than the run will run (a shared study keeps no
        # stale queue for the next night).
        sweep = 0 if binding else max(len(WARM_START_RATIOS), round(SWEEP_SHARE * spec.trials))
        warm = unique([space.clamp(p) for p in previous + warm_starts(space, start_policy, screen, sweep)])
        warm_start(study, space, warm[: spec.trials])
    log(
        f"Run {run.path}: baseline val {settings.metric.label} {baseline['accuracy']:.4f}, "
        f"{format_cost(budget.cost, baseline[budget.cost])}; budget {budget.text} = "
        f"{format_cost(budget.cost, budget.limit)}; {len(prepared.groups)} groups; "
        f"up to {spec.trials} trials."
    )
    started = time.perf_counter()
    try:
        with clock.phase("trials"):
            executor = _executor(prepared, settings)
        with executor:
            log(f"Trials run {executor.describe()}.")
            with clock.phase("trials"):
                ran = run_search(
                    study, executor, space, budget, spec.trials, spec.timeout, progress, screen,
                    spec.fill and binding,
                )  # fmt: skip
            if not binding and spec.promotion_share > 0:
                with clock.phase("promotion"):
                    promote_front(study, executor, settings, spec.final_steps, spec.promotion_share, log)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; finished trials are saved in {run.path} - continue with: {resume_command(spec)}"
        ) from None
    return SearchOutcome(study, screen, settings, ran, time.perf_counter() - started)


def resume_command(spec: JobSpec) -> str:
    """How the user continues the run of ``spec``: the command line (shell-quoted, to paste; a message
    ends with it, no full stop after), or the Python call."""
    if spec.python_model:
        return f"prunepilot.search(model, ..., name={spec.name!r}, out={spec.out!r}, resume=True)"
    return resume_command_line(str(spec.name), spec.out)


def warm_starts(
    space: SearchSpace, start_policy: Policy | None, screen: BudgetScreen | None, sweep: int = 0
) -> list[Policy]:
    """The user's policy, then uniform policies and (with a screen) a uniform policy, the same with
    every removable block removed, the same at the sparsities of :func:`sparse_warm_starts` (in a
    space that searches sparsity), and a global LAMP policy that just fit the budget; policies
    predicted over budget are left out. With ``sweep`` (a budget the baseline meets), the user's
    policy and then that many uniform policies spread over the space's whole range (half of them
    with every removable block removed, see :meth:`SearchSpace.trade_off_sweep`)."""
    warm = [start_policy] if start_policy else []
    if sweep:
        # With a budget the baseline meets, the least pruning that fits is none at all: the sweep
        # maps the trade-off instead.
        return warm + space.trade_off_sweep(sweep)
    fixed = [space.uniform(r) for r in WARM_START_RATIOS if r <= space.max_ratio]
    if screen is None:
        return warm + fixed
    # A space that searches the precision starts from the uniform recipes in int8 too.
    precisions = (None, True) if space.quantize == "search" else (None,)
    fitting = [
        p
        for p in (
            *(screen.uniform_within(space, int8=q) for q in precisions),
            *(screen.uniform_within(space, space.blocks, int8=q) for q in precisions if space.blocks),
            *(screen.uniform_within(space, sparsity=s) for s in sparse_warm_starts(space)),
            screen.global_within(space),
        )
        if p is not None and (p.removed_blocks or any(s.ratio > 0 for s in p.groups.values()))
    ]
    return warm + fitting + [p for p in fixed if p not in fitting and screen.fits(p)]


def sparse_warm_starts(space: SearchSpace) -> list[float]:
    """The sparsities of warm starts in a space that searches sparsity: half of its most, and its most."""
    if not space.sparsity_high:
        return []
    half = round(round(space.max_sparsity / 2 / space.ratio_step) * space.ratio_step, 6)
    return sorted({half, space.max_sparsity})


def open_run_study(spec: JobSpec, run: RunDir, reading: bool = False) -> RunStudy:
    """The run's share of its study; a study shared by runs keeps one metric (values of two metrics
    cannot share a front). ``reading`` (a report, an export): the study must exist, and nothing is
    written to its storage.

    Raises:
        UsageError: reading a run whose storage holds no study (a journal emptied or cut).
    """
    location = storage_location(spec.storage, spec.out, spec.study)
    name, where = spec.study or STUDY_NAME, location or str(run.file(STUDY_FILE))
    if reading and "://" not in where and not Path(where).is_file():  # reading creates nothing
        raise UsageError(
            f"The study journal of run {spec.name!r} ({cut(where)}) is missing; nothing is read, and "
            "the run's last report stays as it is."
        )
    try:
        study = open_study(
            run.path, spec.seed, storage=location, name=name, direction=spec.metric_direction,
            create=not reading,
        )  # fmt: skip
    except KeyError:
        raise UsageError(
            f"The study of run {spec.name!r} ({where}) holds no study {name!r}: its journal was emptied or "
            "cut before its first record; nothing is read, and the run's last report stays as it is."
        ) from None
    metric = Metric(spec.metric).name
    check_study_metric(study.study, metric, spec.metric_direction)
    if "metric" not in study.user_attrs and not reading:
        study.set_user_attr("metric", metric)
    return study


def check_shared_study(spec: JobSpec) -> None:
    """Refuses, before a run starts, a storage that cannot be opened or a shared study
    (``--study``) kept for another metric."""
    if spec.storage and "://" in spec.storage:
        open_storage(spec.storage)
    elif spec.storage:  # a journal's path: checked, nothing written
        check_journal(Path(spec.storage))
    if not spec.study:
        return
    location = str(storage_location(spec.storage, spec.out, spec.study))
    try:
        study = optuna.load_study(study_name=spec.study, storage=open_storage(location))
    except KeyError:  # a new study
        return
    check_study_metric(study, Metric(spec.metric).name, spec.metric_direction)


def predictor_summary(screen: BudgetScreen | None) -> dict[str, Any] | None:
    """The latency predictor as the report gives it; None without one."""
    if screen is None or screen.predictor is None:
        return None
    summary = {
        **screen.predictor.describe(),
        "observed": len(screen.observed),
        "correction": screen.correction,
        "calibration": screen.calibration,
    }
    if screen.int8_predictor is not None:
        summary["int8"] = {**screen.int8_predictor.describe(), "observed": sum(screen.observed_int8),
                           "correction": screen.correction_for(True)}  # fmt: skip
    return summary


def _screen(
    prepared: PreparedJob,
    run: RunDir,
    baseline: dict[str, Any],
    budget: BudgetLimit,
    progress: bool,
    log: Callable[[str], None],
) -> BudgetScreen | None:
    """The budget screen of the run; a latency budget calibrates its predictor first (once per
    run: the measurements are kept in ``latency_calibration.json``)."""
    spec, task, settings = prepared.spec, prepared.task, prepared.settings
    if budget.cost != "latency_ms":
        return BudgetScreen(task.model, task.input_shape, budget, runtime=settings.runtime,
                            size_measure=settings.size_measure)  # fmt: skip
    if spec.calibration_samples == 0:
        return None
    path = run.file(CALIBRATION_FILE)
    if path.is_file():  # a resumed run keeps its own
        calibration = Calibration.from_dict(run.read_json(CALIBRATION_FILE))
        source = {"source": "run"}
    else:
        calibration, source = _calibrate(prepared, progress, log)
        run.write_json(CALIBRATION_FILE, calibration.to_dict())
    # Each precision the space holds gets a predictor of its own (an int8-only space's is the main one).
    quantize = prepared.space.quantize
    predictors = {False: calibration.predictor()} if quantize != "int8" else {}
    if quantize != "none":
        predictors[True] = calibration.predictor(int8=True)
    for int8, predictor in predictors.items():
        log(
            f"Latency predictor{' (int8)' if int8 else ''}: fit on {predictor.samples} measured policies "
            f"({settings.runtime}), vector width {predictor.width}, cross-validated error "
            f"{100 * predictor.cv_mape:.1f}%."
        )
    return BudgetScreen(
        task.model, task.input_shape, budget, predictors.get(False, predictors.get(True)),
        baseline["latency_ms"],
        int8_predictor=predictors.get(True) if quantize == "search" else None, runtime=settings.runtime,
        calibration=source,
    )  # fmt: skip


def _calibrate(
    prepared: PreparedJob, progress: bool, log: Callable[[str], None]
) -> tuple[Calibration, dict[str, Any]]:
    """The job's latency calibration, measured, or reused from an earlier run of a model of the
    same structure on this machine (see :mod:`prunepilot.search.calibration_store`); with where it
    came from, for the report."""
    spec, task, settings = prepared.spec, prepared.task, prepared.settings
    policies = calibration_policies(prepared.space, spec.calibration_samples, spec.seed)
    key = calibration_key(
        task.model, task.input_shape, policies, settings.latency, settings.runtime, spec.device
    )
    kept = load_calibration(key, len(policies))
    if kept is not None:
        calibration, path = kept
        log(f"Latency calibration reused: {len(calibration.ratios)} policies measured before ({path}).")
        return calibration, {"source": "cache", "file": str(path)}
    started = time.perf_counter()
    with tqdm(total=len(policies), desc="latency calibration", unit="policy", disable=not progress) as bar:
        calibration = calibrate_latency(
            task.model, task.input_shape, policies, settings.latency, bar, spec.device,
            runtime=get_runtime(settings.runtime),
        )  # fmt: skip
    saved = save_calibration(key, calibration)
    return calibration, {"source": "measured", "seconds": round(time.perf_counter() - started, 3),
                         "file": str(saved) if saved else None}  # fmt: skip


def _executor(prepared: PreparedJob, settings: TrialSettings) -> TrialExecutor:
    ray_settings = prepared.spec.executor_settings()
    task = prepared.task
    if ray_settings is None:
        return InProcessExecutor(task.model, task.search_data, settings, device=prepared.spec.device)
    return RayExecutor(task.model, task.search_data, settings, ray_settings).start()
