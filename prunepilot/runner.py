"""A search job from start to end: validate, baseline, search, choose, finalize, export, report."""

from __future__ import annotations

import fnmatch
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial
from tqdm import tqdm

from prunepilot import __version__
from prunepilot.budget import Budget, format_metric
from prunepilot.errors import EXIT_BUDGET_NOT_MET, EXIT_OK, Interrupted, PrunepilotError, UsageError
from prunepilot.evaluators import evaluate_model, measure_latency
from prunepilot.evaluators.inputs import dtype_of, on_device
from prunepilot.evaluators.score import DEFAULT_METRIC_NAME, Metric, evaluate_metric
from prunepilot.export import export_plan, export_torchscript, load_torchscript
from prunepilot.final import finalize, score_on_test
from prunepilot.onnx_export import export_onnx
from prunepilot.policies import GroupInfo, Policy, apply_policy, discover_blocks, discover_groups
from prunepilot.report import build_report, markdown, metric_label, pareto_plot
from prunepilot.report_html import html_report
from prunepilot.rundir import RunDir, default_run_name, write_atomically
from prunepilot.search import (
    Objective,
    SearchSpace,
    open_study,
    recover_interrupted,
    run_search,
    warm_start,
)
from prunepilot.search.driver import STUDY_NAME, SWEEP_SHARE, WARM_START_RATIOS, open_storage
from prunepilot.search.executors import InProcessExecutor, RayExecutor, TrialExecutor
from prunepilot.search.pareto import maximizes, pareto_trials, ranked_front, violation
from prunepilot.search.screen import BudgetScreen, Calibration, calibrate_latency, calibration_policies
from prunepilot.spec import JobSpec
from prunepilot.tasks import Task, load_task
from prunepilot.trial import TrialSettings

#: Latency batch size for user models when none is given (the built-in tasks use 64).
DEFAULT_LATENCY_BATCH = 1
BUILTIN_LATENCY_BATCH = 64
#: The best front points by trial score, each given the final fine-tune (see finalize_candidates;
#: cheaper ones follow only when none of these meets the budget on re-measurement).
FINAL_CANDIDATES = 3
#: Latency measurements of the baseline (their median sets a relative budget).
BASELINE_ROUNDS = 3
#: The journal shared by the runs of a named study (``--study``) in one ``--out`` folder.
STUDIES_FILE = "studies.journal"
#: The latency predictor's calibration measurements, in the run directory.
CALIBRATION_FILE = "latency_calibration.json"


def resume_spec(out: str, name: str | None, overrides: dict[str, Any]) -> JobSpec:
    """The saved job of run ``out/name`` (the newest run when ``name`` is None), with overrides."""
    if name is None:
        runs = sorted((p for p in Path(out).glob("*/config.json")), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise UsageError(f"--resume found no run in {out!r}; pass --name of the run to resume.")
        name = runs[-1].parent.name
    run = RunDir.open(out, name, resume=True)
    spec = JobSpec.from_dict(run.read_json("config.json"))
    for key, value in overrides.items():
        if value is not None:
            setattr(spec, key, value)
    spec.name, spec.out, spec.resume = name, out, True
    return spec


def run_job(spec: JobSpec, progress: bool = True, log: Callable[[str], None] | None = None) -> int:
    """Runs a search job; returns the exit code (0 budget met, 3 not met).

    Everything is validated (model, data, policy file, budget reachable) before the run directory
    is created; a resumed run is locked before anything is measured.

    Raises:
        UsageError: on bad input.
        Interrupted: on Ctrl-C (finished trials are kept).
    """
    log = log or (lambda text: print(text, flush=True))
    spec.validate()
    budget = spec.parsed_budget
    # A resumed run's study already holds its warm starts; the policy file is not read again.
    start_policy = Policy.load(spec.policy) if spec.policy and not spec.resume else None
    if spec.dry_run:
        job = _prepare(spec, start_policy, progress)
        baseline = _baseline(job)
        _print_dry_run(log, job, baseline, budget)
        return EXIT_OK
    assert budget is not None
    if spec.resume:
        run = RunDir.open(spec.out, str(spec.name), resume=True)
        with run:
            job = _prepare(spec, start_policy, progress)
            baseline = run.read_json("baseline.json") if run.file("baseline.json").is_file() else None
            if baseline is None:
                baseline = _baseline(job)
                run.write_json("baseline.json", baseline)
            return _search_and_finish(job, run, baseline, start_policy, progress, log)

    spec.name = spec.name or default_run_name(spec.out)
    RunDir.check(spec.out, spec.name, resume=False)  # before anything slow runs
    job = _prepare(spec, start_policy, progress)
    baseline = _baseline(job)
    _check_reachable(job, baseline, budget.resolve(baseline[budget.metric]))
    if spec.storage and "://" in spec.storage:
        open_storage(spec.storage)  # a storage that cannot be opened is refused before the run starts
    _check_shared_study(spec)
    run = RunDir.open(spec.out, spec.name, resume=False)
    with run:
        run.write_json("config.json", spec.to_dict())
        run.write_json("baseline.json", baseline)
        return _search_and_finish(job, run, baseline, start_policy, progress, log)


def check_job(spec: JobSpec, log: Callable[[str], None] | None = None) -> int:
    """Checks everything a search needs without searching: the job's fields, the policy file, the
    model and data (imports, shapes, a forward and backward pass), that the model traces for pruning,
    and that the smallest model of the space meets the budget. Writes nothing.

    Raises:
        UsageError: naming what is wrong.
    """
    log = log or (lambda text: print(text, flush=True))
    spec.validate()
    start_policy = Policy.load(spec.policy) if spec.policy else None
    job = _prepare(spec, start_policy, progress=False)
    baseline = _baseline(job)
    budget = spec.parsed_budget
    reach = ""
    if budget is not None:
        limit = budget.resolve(baseline[budget.metric])
        _check_reachable(job, baseline, limit)
        reach = f"; budget {budget.text} = {format_metric(budget.metric, limit)} is reachable"
    log(
        f"The job is valid: task {job.task.name}, input {job.task.input_shape}, {len(job.groups)} prunable "
        f"groups, baseline val {job.settings.metric.label} {baseline['accuracy']:.4f}, "
        f"{format_metric('latency_ms', baseline['latency_ms'])}{reach}."
    )
    return EXIT_OK


@dataclass
class _Job:
    spec: JobSpec
    task: Task
    groups: list[GroupInfo]
    space: SearchSpace
    settings: TrialSettings


def _prepare(spec: JobSpec, start_policy: Policy | None, progress: bool, on_device: bool = True) -> _Job:
    """Loads and checks the job's task, groups, space and settings; ``on_device=False`` skips the
    target-device check (``prunepilot report`` needs no GPU)."""
    if on_device:
        _check_device(spec.device)
    task = load_task(
        spec.model, spec.weights, spec.data, spec.input_shape, progress, spec.task, spec.input_dtype
    )
    discovered = discover_groups(task.model, task.input_shape)
    removable = discover_blocks(task.model, task.input_shape)
    if start_policy is not None:  # a policy may name any group; excluded ones are dropped from it
        start_policy.check_groups((g.name for g in discovered), f"The policy file {spec.policy!r}")
        start_policy.check_blocks(removable, f"The policy file {spec.policy!r}")
    groups, blocks = _searched(discovered, removable if spec.block_removal else [], spec.exclude)
    criteria = {"criteria": tuple(spec.criteria)} if spec.criteria else {}
    if spec.round_to_choices:
        criteria["round_to_choices"] = tuple(spec.round_to_choices)
    space = SearchSpace(
        tuple(groups),
        tuple(blocks),
        ratio_low=spec.ratio_min,
        ratio_high=spec.ratio_max,
        round_to=spec.round_to,
        **criteria,
    )
    latency_batch = BUILTIN_LATENCY_BATCH if spec.model is None else DEFAULT_LATENCY_BATCH
    settings = spec.trial_settings(latency_batch)
    _check_metric(task, settings.metric)
    return _Job(spec, task, groups, space, settings)


def _check_device(device: str) -> None:
    """Refuses a CUDA target on a machine without CUDA (the baseline and the final model are
    measured here)."""
    if device != "cpu" and not torch.cuda.is_available():
        raise UsageError(
            f"The 'device' parameter of JobSpec (--device) names {device!r} but CUDA is not available "
            "on this machine; use 'cpu' or run where the target GPU is.",
            "device",
        )


def _searched(
    groups: list[GroupInfo], blocks: list[str], exclude: list[str] | None
) -> tuple[list[GroupInfo], list[str]]:
    """The groups the search may prune and the blocks it may remove: all but those matching an
    ``exclude`` name or pattern.

    Raises:
        UsageError: when a pattern matches no group or block, or no group is left to prune.
    """
    patterns = exclude or []

    def excluded(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in [*(g.name for g in groups), *blocks]):
            also = f" and the removable blocks {blocks}" if blocks else ""
            raise UsageError(
                f"The 'exclude' parameter of JobSpec (--exclude) names {pattern!r}, which matches no "
                f"prunable group{' or removable block' if blocks else ''}; the groups are "
                f"{[g.name for g in groups]}{also}.",
                "exclude",
            )
    kept = [g for g in groups if not excluded(g.name)]
    if not kept:
        raise UsageError(
            "The 'exclude' parameter of JobSpec (--exclude) leaves no group to prune.", "exclude"
        )
    # A block goes with every layer in it: one that holds an excluded group is excluded too.
    left_alone = [g.name for g in groups if excluded(g.name)]
    kept_blocks = [
        b for b in blocks
        if not (excluded(b) or excluded(b + ".") or any(n.startswith(b + ".") for n in left_alone))
    ]  # fmt: skip
    return kept, kept_blocks


def _check_metric(task: Task, metric: Metric) -> None:
    """Scores the base model on the validation split (as every trial will), so that a broken metric
    is bad input reported now rather than a failure of every trial."""
    if metric.resolve() is None:
        return  # top-1 accuracy
    try:
        evaluate_metric(task.model, task.val, metric)
    except Exception as exc:  # noqa: BLE001 - the user's metric failing is bad input
        raise UsageError(
            f"The metric {metric.name!r} fails on the model's outputs and the labels of the validation "
            f"split ({type(exc).__name__}: {exc}); it must map (outputs, labels) to a number.",
            "metric",
        ) from exc


def _executor(job: _Job) -> TrialExecutor:
    ray_settings = job.spec.executor_settings()
    if ray_settings is None:
        return InProcessExecutor(job.task.model, job.task.search_data, job.settings, device=job.spec.device)
    return RayExecutor(job.task.model, job.task.search_data, job.settings, ray_settings).start()


def _search_and_finish(
    job: _Job,
    run: RunDir,
    baseline: dict[str, Any],
    start_policy: Policy | None,
    progress: bool,
    log: Callable[[str], None],
) -> int:
    spec, task, space, settings = job.spec, job.task, job.space, job.settings
    budget = spec.parsed_budget
    assert budget is not None
    limit = budget.resolve(baseline[budget.metric])
    objective = Objective(budget.metric, limit)
    if budget.metric == "latency_ms":
        # Trials time their pruned model alongside the base model: drift of the machine cancels.
        job.settings = settings = replace(settings, reference_latency_ms=baseline["latency_ms"])
    # A budget the baseline already meets does not bind: the run maps the whole trade-off, from a
    # sweep of uniform policies, and fills no policy up to the budget (that would undo its pruning).
    binding = baseline[budget.metric] > limit
    if not binding:
        log(
            f"The baseline already meets the budget {budget.text!r}: searching the whole trade-off "
            "(a sweep of uniform policies first; no policy filled up to the budget)."
        )
    screen = _screen(job, run, baseline, limit, progress, log) if spec.screen else None
    study = _open_run_study(spec, run)
    recovered = recover_interrupted(study, space)
    if recovered:
        log(f"Recovered {recovered} trial(s) left running by an interrupted run; re-queued them.")
    if screen is not None:  # a resumed run's screen learns again from its trials so far
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            policy, result = Policy.from_dict(trial.user_attrs["policy"]), trial.user_attrs["result"]
            screen.observe(policy, result[budget.metric])
    if not study.trials:
        previous = _previous_front(study)
        if previous:
            log(f"Study {study.study_name!r}: warm-starting from its last front ({len(previous)} policies).")
        # Within the space's bounds, and no more than the run will run (a shared study keeps no
        # stale queue for the next night).
        sweep = 0 if binding else max(len(WARM_START_RATIOS), round(SWEEP_SHARE * spec.trials))
        warm = _dedupe([space.clamp(p) for p in previous + _warm_starts(space, start_policy, screen, sweep)])
        warm = warm[: spec.trials]
        warm_start(study, space, warm)
    log(
        f"Run {run.path}: baseline val {settings.metric.label} {baseline['accuracy']:.4f}, "
        f"{format_metric(budget.metric, baseline[budget.metric])}; budget {budget.text} = "
        f"{format_metric(budget.metric, limit)}; {len(job.groups)} groups; up to {spec.trials} trials."
    )
    started = time.perf_counter()
    try:
        with _executor(job) as executor:
            log(f"Trials run {executor.describe()}.")
            ran = run_search(
                study,
                executor,
                space,
                objective,
                spec.trials,
                spec.timeout,
                progress,
                screen,
                spec.fill and binding,
            )
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; finished trials are saved in {run.path} - continue with "
            f"'prunepilot search --resume --name {spec.name} --out {spec.out}'."
        ) from None
    search_wall = time.perf_counter() - started

    header = {
        "run": {"name": spec.name, "path": str(run.path), "prunepilot": __version__,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "search_wall_s": search_wall, "trials_run_this_time": ran},
        **_job_header(job, baseline, limit),
        "trial_settings": settings.to_dict(),
        "latency_predictor": _predictor_summary(screen),
    }  # fmt: skip
    done = finalize_candidates(
        ranked_front(study), task, spec.final_settings(settings), budget, limit, log, spec.device,
        maximizes(study),
    )  # fmt: skip
    if done is not None:
        log(f"Exporting trial {done.trial.number}: TorchScript, ONNX and plan, each checked ...")
        done.final["export"] = export_all(done, spec, task, settings, run.path)
        write_atomically(run.file("policy.json"), done.policy.to_json() + "\n")
        # The study keeps the final measurements too, so that `prunepilot report` can rebuild them.
        study.set_user_attr(f"final:{spec.name}", {"trial": done.trial.number, "final": done.final})
    report = write_report(run, study, header, done and done.trial, done and done.final)
    _print_summary(log, run, report, budget)
    if not any(t["state"] == "COMPLETE" for t in report["trials"]):
        errors = Counter(t["error"] for t in report["trials"] if t["error"])
        if errors:
            common, count = errors.most_common(1)[0]
            raise PrunepilotError(
                f"every trial failed ({count} of {len(report['trials'])} with: {common}); "
                f"the report is in {run.path}."
            )
    return EXIT_OK if report["budget_met"] else EXIT_BUDGET_NOT_MET


def _screen(
    job: _Job,
    run: RunDir,
    baseline: dict[str, Any],
    limit: float,
    progress: bool,
    log: Callable[[str], None],
) -> BudgetScreen | None:
    """The budget screen of the run; a latency budget calibrates its predictor first (once per
    run: the measurements are kept in ``latency_calibration.json``)."""
    spec, task = job.spec, job.task
    metric = spec.parsed_budget.metric if spec.parsed_budget else "latency_ms"
    if metric != "latency_ms":
        return BudgetScreen(task.model, task.input_shape, metric, limit)
    if spec.calibration_samples == 0:
        return None
    path = run.file(CALIBRATION_FILE)
    if path.is_file():
        calibration = Calibration.from_dict(run.read_json(CALIBRATION_FILE))
    else:
        policies = calibration_policies(job.space, spec.calibration_samples, spec.seed)
        with tqdm(
            total=len(policies), desc="latency calibration", unit="policy", disable=not progress
        ) as bar:
            calibration = calibrate_latency(
                task.model, task.input_shape, policies, job.settings.latency, bar, spec.device
            )
        run.write_json(CALIBRATION_FILE, calibration.to_dict())
    predictor = calibration.predictor()
    log(
        f"Latency predictor: fit on {predictor.samples} measured policies, vector width "
        f"{predictor.width}, cross-validated error {100 * predictor.cv_mape:.1f}%."
    )
    return BudgetScreen(task.model, task.input_shape, metric, limit, predictor, baseline["latency_ms"])


def _predictor_summary(screen: BudgetScreen | None) -> dict[str, Any] | None:
    """The latency predictor as the report gives it; None without one."""
    if screen is None or screen.predictor is None:
        return None
    return {**screen.predictor.describe(), "observed": len(screen.observed), "correction": screen.correction}


def _warm_starts(
    space: SearchSpace, start_policy: Policy | None, screen: BudgetScreen | None, sweep: int = 0
) -> list[Policy]:
    """The user's policy, then uniform policies and (with a screen) a uniform policy, the same with
    every removable block removed, and a global LAMP policy that just fit the budget; policies
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
    fitting = [
        p
        for p in (
            screen.uniform_within(space),
            screen.uniform_within(space, space.blocks) if space.blocks else None,
            screen.global_within(space),
        )
        if p is not None and (p.skip or any(s.ratio > 0 for s in p.groups.values()))
    ]
    return warm + fitting + [p for p in fixed if p not in fitting and screen.fits(p)]


@dataclass
class Finalized:
    """A front point made for real (see :func:`finalize`).

    Attributes:
        trial: The trial whose policy it is.
        final: Its measurements, with ``budget_limit`` and ``budget_met``.
        model: The fine-tuned pruned model.
        policy: The policy.
        removed: The plan: group -> removed channel indices.
    """

    trial: FrozenTrial
    final: dict[str, Any]
    model: torch.nn.Module
    policy: Policy
    removed: dict[str, list[int]]


def finalize_candidates(
    ranked: list[FrozenTrial],
    task: Task,
    settings: TrialSettings,
    budget: Budget,
    limit: float,
    log: Callable[[str], None],
    device: str = "cpu",
    maximize: bool = True,
) -> Finalized | None:
    """Finalizes the first :data:`FINAL_CANDIDATES` of ``ranked`` (``settings.finetune_steps`` is
    the final length) and returns the one with the best validation metric after the final
    fine-tune among those that meet the budget on re-measurement (ties: the earlier one).

    The trial score ranks policies only roughly (``benchmarks/proxy_fidelity.py``), so the few best
    are promoted to the full fine-tune and compared there, on the validation split; only the one
    returned is scored on the test split. When none of them meets the budget on re-measurement,
    the rest of ``ranked`` is finalized in turn until one does (down the feasible front, each
    next point scores lower and costs less): a model within budget is worth some accuracy. When
    none ever does, the last one finalized is returned. ``final["candidates"]`` records each
    finalized one's validation metric and cost.

    Args:
        ranked: Trials of the feasible front, best trial score first (None is returned when empty).
    """
    finished: list[Finalized] = []
    for candidate in ranked:
        if len(finished) >= FINAL_CANDIDATES and any(done.final["budget_met"] for done in finished):
            break
        if len(finished) == FINAL_CANDIDATES:
            log(f"None of the {FINAL_CANDIDATES} best front points meets the budget on re-measurement; "
                "trying the cheaper ones in turn.")  # fmt: skip
        policy = Policy.from_dict(candidate.user_attrs["policy"])
        log(f"Final fine-tune of trial {candidate.number} ({settings.finetune_steps} steps) ...")
        removed: dict[str, list[int]] = {}
        model, final = finalize(task, policy, settings, removed, device)
        final["budget_limit"] = _final_limit(final, budget, limit)
        final["budget_met"] = final[budget.metric] <= final["budget_limit"]
        finished.append(Finalized(candidate, final, model, policy, removed))
        if not final["budget_met"]:
            log(f"Trial {candidate.number} misses the budget on re-measurement.")
    if not finished:
        return None
    fitting = [done for done in finished if done.final["budget_met"]]
    sign = 1.0 if maximize else -1.0
    chosen = max(fitting, key=lambda done: sign * done.final["val_accuracy"]) if fitting else finished[-1]
    chosen.final["candidates"] = [
        {"number": done.trial.number, "val_accuracy": done.final["val_accuracy"],
         budget.metric: done.final[budget.metric], "budget_met": done.final["budget_met"]}
        for done in finished
    ]  # fmt: skip
    chosen.final.update(score_on_test(task, chosen.model, settings, device))
    return chosen


#: Export formats (``prunepilot export --format``) and the files each writes.
EXPORT_FORMATS = {
    "torchscript": ("model.ts.pt",),
    "onnx": ("model.onnx",),
    "plan": ("plan.json", "weights.pt"),
}


def export_all(
    done: Finalized,
    spec: JobSpec,
    task: Task,
    settings: TrialSettings,
    folder: Path,
    formats: tuple[str, ...] = tuple(EXPORT_FORMATS),
) -> dict[str, Any]:
    """Exports ``done.model`` in ``formats`` into ``folder``; each export is reloaded (or run in its
    runtime), compared with the model on test inputs and timed there. Returns the ``export`` entry
    of the report."""
    inputs = torch.stack([task.test[i][0] for i in range(min(64, len(task.test)))])
    export: dict[str, Any] = {"policy": "policy.json"}
    if "torchscript" in formats:
        export["torchscript"] = "model.ts.pt"
        export["torchscript_max_abs_diff"] = export_torchscript(done.model, inputs, folder / "model.ts.pt")
        scripted = load_torchscript(folder / "model.ts.pt")
        export["torchscript_latency_ms"] = measure_latency(scripted, task.input_shape, settings.latency)
    if "onnx" in formats:
        export["onnx"] = "model.onnx"
        export.update(export_onnx(done.model, inputs, folder / "model.onnx", settings.latency))
    if "plan" in formats:
        export["plan"], export["plan_weights"] = "plan.json", "weights.pt"
        export["plan_max_abs_diff"] = export_plan(
            done.model, done.removed, _model_source(spec), task.input_shape, inputs, folder, done.policy.skip
        )
    return export


def write_report(
    run: RunDir, study, header: dict[str, Any], chosen: FrozenTrial | None, final: dict[str, Any] | None
) -> dict[str, Any]:
    """Writes report.json, pareto.png, report.md and report.html; returns the report."""
    report = build_report(study, header, chosen, final)
    run.write_json("report.json", report)
    write_atomically(run.file("pareto.png"), pareto_plot(report))
    write_atomically(run.file("report.md"), markdown(report, "pareto.png"))
    write_atomically(run.file("report.html"), html_report(report))
    return report


def _job_header(job: _Job, baseline: dict[str, Any], limit: float) -> dict[str, Any]:
    """The report's entries that describe the job: its settings, task, metric, groups, baseline
    and budget."""
    spec, task, budget = job.spec, job.task, job.spec.parsed_budget
    assert budget is not None
    return {
        "job": spec.to_dict(),
        "task": {"name": task.name, "input_shape": list(task.input_shape),
                 "input_dtype": dtype_of(task.input_shape), "device": spec.device},
        "metric": job.settings.metric.to_dict(),
        "groups": [g.to_dict() for g in job.groups],
        "blocks": list(job.space.blocks),
        "baseline": baseline,
        "budget": {**budget.to_dict(), "limit": limit, "baseline_value": baseline[budget.metric]},
    }  # fmt: skip


def rebuild_report(run_path: str, log: Callable[[str], None] | None = None) -> int:
    """Re-creates a run's report files from its study (``prunepilot report``). The final model's
    measurements come from the run's last report when it has one; nothing is retrained.

    Returns:
        0 when the budget was met, 3 when not.
    """
    log = log or (lambda text: print(text, flush=True))
    run, spec = _open_finished(run_path)
    with run:
        job = _prepare(spec, None, progress=False, on_device=False)
        baseline = run.read_json("baseline.json")
        budget = spec.parsed_budget
        assert budget is not None
        limit = budget.resolve(baseline[budget.metric])
        previous = run.read_json("report.json") if run.file("report.json").is_file() else {}
        study = _open_run_study(spec, run)
        header = {
            "run": {**previous.get("run", {}), "name": spec.name, "path": str(run.path),
                    "prunepilot": __version__, "report_rebuilt": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
            **_job_header(job, baseline, limit),
            "trial_settings": previous.get("trial_settings", job.settings.to_dict()),
            "latency_predictor": previous.get("latency_predictor"),
        }  # fmt: skip
        kept = study.user_attrs.get(f"final:{spec.name}") or {
            "trial": (previous.get("chosen") or {}).get("number"),
            "final": previous.get("final"),
        }
        chosen = next((t for t in study.trials if t.number == kept["trial"]), None)
        report = write_report(run, study, header, chosen, kept["final"] if chosen else None)
        log(f"Report re-created from the study: {run.file('report.html')}")
    return EXIT_OK if report["budget_met"] else EXIT_BUDGET_NOT_MET


def export_trial(
    run_path: str, number: int, formats: tuple[str, ...], log: Callable[[str], None] | None = None
) -> int:
    """Re-creates trial ``number``'s model (its policy on a fresh copy of the base model, the final
    fine-tune) and exports it into ``RUN/exports/trial-N/`` (``prunepilot export``), checked as the
    run's own exports are."""
    log = log or (lambda text: print(text, flush=True))
    run, spec = _open_finished(run_path)
    with run:
        study = _open_run_study(spec, run)
        completed = [t.number for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if number not in completed:
            raise UsageError(
                f"Trial {number} is not a completed trial of run {spec.name!r}; completed: {completed}."
            )
        trial = next(t for t in study.trials if t.number == number)
        job = _prepare(spec, None, progress=False)
        baseline = run.read_json("baseline.json")
        settings = replace(job.settings, reference_latency_ms=baseline["latency_ms"])
        policy = Policy.from_dict(trial.user_attrs["policy"])
        log(f"Final fine-tune of trial {number} ({spec.final_steps} steps) ...")
        removed: dict[str, list[int]] = {}
        model, final = finalize(job.task, policy, spec.final_settings(settings), removed, spec.device)
        final.update(score_on_test(job.task, model, settings, spec.device))
        folder = run.path / "exports" / f"trial-{number}"
        folder.mkdir(parents=True, exist_ok=True)
        done = Finalized(trial, final, model, policy, removed)
        final["export"] = export_all(done, spec, job.task, settings, folder, formats)
        write_atomically(folder / "policy.json", policy.to_json() + "\n")
        write_atomically(
            folder / "export.json", json.dumps({"trial": number, "final": final}, indent=1) + "\n"
        )
        files = [f for name in formats for f in EXPORT_FORMATS[name]]
        log(
            f"Trial {number}: test {job.settings.metric.label} {final['test_accuracy']:.4f}, latency "
            f"{final['latency_ms']:.3f} ms; exported {', '.join(files)} to {folder}"
        )
    return EXIT_OK


def _open_finished(run_path: str) -> tuple[RunDir, JobSpec]:
    path = Path(run_path)
    if not (path / "config.json").is_file():
        raise UsageError(f"{run_path!r} is not a run directory (it has no config.json).")
    run = RunDir.open(str(path.parent), path.name, resume=True)
    spec = JobSpec.from_dict(run.read_json("config.json"))
    spec.name, spec.out = path.name, str(path.parent)
    return run, spec.validate()


def _open_run_study(spec: JobSpec, run: RunDir):
    """The run's share of its study; a study shared by runs keeps one metric (values of two metrics
    cannot share a front)."""
    study = open_study(
        run.path, spec.seed, storage=_storage_of(spec), name=spec.study or STUDY_NAME,
        direction=spec.metric_direction,
    )  # fmt: skip
    _check_study_metric(study.study, spec)
    if "metric" not in study.user_attrs:
        study.set_user_attr("metric", Metric(spec.metric).name)
    return study


def _check_shared_study(spec: JobSpec) -> None:
    """Refuses, before a run starts, a shared study (``--study``) kept for another metric."""
    if not spec.study:
        return
    try:
        study = optuna.load_study(study_name=spec.study, storage=open_storage(str(_storage_of(spec))))
    except KeyError:  # a new study
        return
    _check_study_metric(study, spec)


def _check_study_metric(study: optuna.Study, spec: JobSpec) -> None:
    """Raises ``UsageError`` when ``study`` scores trials with another metric or direction than the
    job (values of two metrics cannot share a front). A study without the record is top-1 accuracy's
    when it has trials."""
    direction = study.directions[0].name.lower()
    default = DEFAULT_METRIC_NAME if study.get_trials(deepcopy=False) else None
    stored = study.user_attrs.get("metric", default)
    metric = Metric(spec.metric).name
    if direction != spec.metric_direction or stored not in (None, metric):
        raise UsageError(
            f"The study {study.study_name!r} {direction}s the metric {stored or metric!r} but this job "
            f"{spec.metric_direction}s {metric!r}; use another --study name, or the study's metric.",
            "metric",
        )


def _storage_of(spec: JobSpec) -> str | None:
    """The study's storage: the job's URL; for a named study, one journal shared by the runs in
    ``out``; else None (the run's own journal file)."""
    if spec.storage:
        return spec.storage
    return str(Path(spec.out) / STUDIES_FILE) if spec.study else None


def _previous_front(study) -> list[Policy]:
    """The policies of the feasible front of the study's earlier runs (nightly warm start)."""
    trials = [t for t in study.other_runs_trials() if violation(t) == 0 and "policy" in t.user_attrs]
    front = pareto_trials(trials, maximizes(study))
    return [Policy.from_dict(t.user_attrs["policy"]) for t in front]


def _dedupe(policies: list[Policy]) -> list[Policy]:
    unique: list[Policy] = []
    for policy in policies:
        if policy not in unique:
            unique.append(policy)
    return unique


def _model_source(spec: JobSpec) -> dict[str, str]:
    """Where the base model's class comes from, for a plan: a built-in task or the factory."""
    return {"task": spec.task} if spec.model is None else {"factory": spec.model}


def _final_limit(final: dict[str, Any], budget: Budget, limit: float) -> float:
    """The bound the final model is judged against.

    A relative latency budget (``2x``, ``50%``) is resolved against the baseline re-measured side by
    side with the final model, so that drift in the machine's speed hits both alike.
    """
    if budget.metric == "latency_ms" and budget.fraction is not None:
        return budget.fraction * final["baseline_latency_ms"]
    return limit


def _baseline(job: _Job) -> dict[str, Any]:
    """The baseline's validation metrics; latency is the median of a few measurements."""
    task, latency, device = job.task, job.settings.latency, job.spec.device
    model = on_device(task.model, device)
    metrics = evaluate_model(
        model, task.val, task.input_shape, latency, device=device, metric=job.settings.metric
    ).to_dict()
    repeats = [metrics["latency_ms"]]
    repeats += [measure_latency(model, task.input_shape, latency, device) for _ in range(BASELINE_ROUNDS - 1)]
    metrics["latency_ms"] = statistics.median(repeats)
    return metrics


def _check_reachable(job: _Job, baseline: dict[str, Any], limit: float) -> None:
    """Refuses a budget that the smallest model of the space misses (latency: timed alongside the
    base model, as trials are)."""
    task, space = job.task, job.space
    budget = job.spec.parsed_budget
    assert budget is not None
    device = job.spec.device
    smallest_policy = replace(space.uniform(space.max_ratio, "l1"), skip=space.blocks)
    smallest = apply_policy(task.model, smallest_policy, task.input_shape).to(device)
    reference = (on_device(task.model, device), baseline["latency_ms"])
    metrics = evaluate_model(
        smallest, task.val, task.input_shape, job.settings.latency, device=device, reference=reference,
        metric=job.settings.metric,
    )  # fmt: skip
    value = metrics.metric(budget.metric)
    if value > limit:
        raise UsageError(
            f"The budget {budget.text!r} ({format_metric(budget.metric, limit)}) cannot be met: the "
            f"smallest model in the search space (every group pruned by {space.max_ratio:g}"
            f"{', every removable block removed' if space.blocks else ''}) "
            f"measures {format_metric(budget.metric, value)}; loosen the budget or raise --ratio-max "
            "(at most 0.95)."
        )


def _print_dry_run(log, job: _Job, baseline: dict[str, Any], budget: Budget | None) -> None:
    task, latency = job.task, job.settings.latency
    log(f"Task: {task.name}, input shape {task.input_shape}")
    log(
        f"Baseline (validation): {job.settings.metric.label} {baseline['accuracy']:.4f}, "
        f"{format_metric('flops', baseline['flops'])}, {baseline['params']:,} params, "
        f"{format_metric('size_bytes', baseline['size_bytes'])}, latency "
        f"{baseline['latency_ms']:.3f} ms (batch {latency.batch_size}, {latency.threads} thread(s))"
    )
    if budget is not None:
        limit = budget.resolve(baseline[budget.metric])
        log(f"Budget: {budget.text} -> {format_metric(budget.metric, limit)}")
    log(f"{'group':32} {'channels':>8} {'FLOPs':>7}  layers")
    for g in job.groups:
        log(f"{g.name:32} {g.channels:>8} {100 * g.flops_share:>6.1f}%  {', '.join(g.modules)}")
    log("Search space:")
    for line in job.space.describe():
        log(f"  {line}")


def _print_summary(log, run: RunDir, report: dict[str, Any], budget: Budget) -> None:
    final = report["final"]
    if final:
        log(
            f"Chosen trial {report['chosen']['number']}: "
            f"test {metric_label(report)} {final['test_accuracy']:.4f} "
            f"(baseline {final['baseline_test_accuracy']:.4f}), latency {final['latency_ms']:.3f} ms "
            f"(baseline {final['baseline_latency_ms']:.3f} ms, "
            f"{_change(final['latency_ms'], final['baseline_latency_ms'])}), "
            f"budget {'met' if report['budget_met'] else 'NOT met'}."
        )
    else:
        closest = report["closest"]
        where = (
            f" Closest: trial {closest['number']} at "
            f"{format_metric(budget.metric, closest['result'][budget.metric])}."
            if closest
            else ""
        )
        print(f"No trial met the budget {budget.text}.{where}", file=sys.stderr)
    log(f"Report: {run.file('report.md')}")


def _change(value: float, reference: float) -> str:
    ratio = value / reference - 1
    return f"{100 * abs(ratio):.0f}% {'lower' if ratio <= 0 else 'higher'}"
