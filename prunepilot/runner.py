"""A search job from start to end: validate, baseline, search, choose, finalize, export, report."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from prunepilot import __version__
from prunepilot.budget import Budget, format_metric
from prunepilot.errors import EXIT_BUDGET_NOT_MET, EXIT_OK, UsageError
from prunepilot.evaluators import LatencySettings, evaluate_model
from prunepilot.export import export_torchscript
from prunepilot.final import finalize
from prunepilot.policies import GroupInfo, Policy, apply_policy, discover_groups
from prunepilot.report import build_report, markdown, pareto_plot
from prunepilot.rundir import RunDir, default_run_name, write_atomically
from prunepilot.search import (
    Objective,
    SearchSpace,
    feasible_front,
    open_study,
    recover_interrupted,
    run_search,
    warm_start,
)
from prunepilot.search.driver import WARM_START_RATIOS
from prunepilot.spec import JobSpec
from prunepilot.tasks import Task, load_task

#: Latency batch size for user models when none is given (the default task uses 64).
DEFAULT_LATENCY_BATCH = 1
DIGITS_LATENCY_BATCH = 64
#: Front points tried in turn when the final model misses the budget on re-measurement.
FINAL_CANDIDATES = 3


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

    Raises:
        UsageError: on bad input, before the run directory is created or changed.
    """
    log = log or (lambda text: print(text, flush=True))
    spec.validate()
    budget = spec.parsed_budget
    start_policy = Policy.load(spec.policy) if spec.policy else None
    if not spec.dry_run:
        spec.name = spec.name or default_run_name()
        _check_run_dir(spec)

    task = load_task(spec.model, spec.weights, spec.data, spec.input_shape, progress=progress)
    groups = discover_groups(task.model, task.input_shape)
    criteria = {"criteria": tuple(spec.criteria)} if spec.criteria else {}
    space = SearchSpace(tuple(groups), ratio_high=spec.ratio_max, round_to=spec.round_to, **criteria)
    if start_policy is not None:
        apply_policy(task.model, start_policy, task.input_shape)  # raises on unknown groups
    latency_batch = DIGITS_LATENCY_BATCH if spec.model is None else DEFAULT_LATENCY_BATCH
    settings = spec.trial_settings(latency_batch)
    baseline = _baseline(spec, task, settings.latency)

    if spec.dry_run:
        _print_dry_run(log, task, groups, baseline, space, budget, settings.latency)
        return EXIT_OK

    assert budget is not None
    limit = budget.resolve(baseline[budget.metric])
    _check_reachable(task, space, settings.latency, budget, limit)
    run = RunDir.open(spec.out, spec.name, spec.resume)
    with run:
        return _search_and_finish(
            spec, run, task, groups, space, settings, baseline, budget, limit, start_policy, progress, log
        )


def _search_and_finish(
    spec: JobSpec,
    run: RunDir,
    task: Task,
    groups: list[GroupInfo],
    space: SearchSpace,
    settings,
    baseline: dict[str, Any],
    budget: Budget,
    limit: float,
    start_policy: Policy | None,
    progress: bool,
    log: Callable[[str], None],
) -> int:
    if spec.resume and run.file("baseline.json").is_file():
        baseline = run.read_json("baseline.json")
        limit = budget.resolve(baseline[budget.metric])
    else:
        run.write_json("config.json", spec.to_dict())
        run.write_json("baseline.json", baseline)
    objective = Objective(budget.metric, limit)
    study = open_study(run.path, spec.seed)
    recovered = recover_interrupted(study)
    if recovered:
        log(f"Recovered {recovered} trial(s) left running by an interrupted run; re-queued them.")
    if not study.trials:
        warm = ([start_policy] if start_policy else []) + [space.uniform(r) for r in WARM_START_RATIOS]
        warm_start(study, space, warm)
    log(
        f"Run {run.path}: baseline val accuracy {baseline['accuracy']:.4f}, "
        f"{format_metric(budget.metric, baseline[budget.metric])}; budget {budget.text} = "
        f"{format_metric(budget.metric, limit)}; {len(groups)} groups; up to {spec.trials} trials."
    )
    started = time.perf_counter()
    ran = run_search(
        study, task.model, task.search_data, space, settings, objective, spec.trials, spec.timeout, progress
    )
    search_wall = time.perf_counter() - started

    header = {
        "run": {
            "name": spec.name,
            "path": str(run.path),
            "prunepilot": __version__,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "search_wall_s": search_wall,
            "trials_run_this_time": ran,
        },
        "job": spec.to_dict(),
        "task": {"name": task.name, "input_shape": list(task.input_shape)},
        "groups": [g.to_dict() for g in groups],
        "baseline": baseline,
        "budget": {**budget.to_dict(), "limit": limit, "baseline_value": baseline[budget.metric]},
        "trial_settings": settings.to_dict(),
    }
    chosen, final = None, None
    for candidate in _candidates(study):
        policy = Policy.from_dict(candidate.user_attrs["policy"])
        log(f"Final fine-tune of trial {candidate.number} ({spec.final_steps} steps) ...")
        model, final = finalize(task, policy, spec.final_settings(settings))
        final["budget_met"] = _within_budget(final, budget, limit)
        chosen = candidate
        if final["budget_met"]:
            break
        log(f"Trial {candidate.number} misses the budget on re-measurement; trying the next point.")
    if final is not None:
        inputs = torch.stack([task.test[i][0] for i in range(min(64, len(task.test)))])
        final["export"] = {
            "torchscript": "model.ts.pt",
            "torchscript_max_abs_diff": export_torchscript(model, inputs, run.file("model.ts.pt")),
            "policy": "policy.json",
        }
        write_atomically(run.file("policy.json"), policy.to_json() + "\n")
    report = build_report(study, header, chosen, final)
    run.write_json("report.json", report)
    write_atomically(run.file("pareto.png"), pareto_plot(report))
    write_atomically(run.file("report.md"), markdown(report, "pareto.png"))
    _print_summary(log, run, report, budget)
    return EXIT_OK if report["budget_met"] else EXIT_BUDGET_NOT_MET


def _candidates(study):
    front = feasible_front(study)
    ranked = sorted(front, key=lambda t: (-t.values[0], t.values[1]))
    return ranked[:FINAL_CANDIDATES]


def _within_budget(final: dict[str, Any], budget: Budget, limit: float) -> bool:
    if budget.metric != "latency_ms":
        return final[budget.metric] <= limit
    if budget.fraction is not None:  # relative: judged against the baseline measured alongside
        return final["latency_ms"] <= budget.fraction * final["baseline_latency_ms"]
    return final["latency_ms"] <= limit


def _check_run_dir(spec: JobSpec) -> None:
    path = Path(spec.out) / str(spec.name)
    if spec.resume:
        if not (path / "config.json").is_file():
            raise UsageError(f"Cannot resume {str(path)!r}: it holds no run (no config.json).")
    elif path.exists():
        raise UsageError(
            f"The run directory {str(path)!r} already exists; pass --resume to continue it "
            "or choose another --name."
        )


def _baseline(spec: JobSpec, task: Task, latency: LatencySettings) -> dict[str, Any]:
    metrics = evaluate_model(task.model, task.val, task.input_shape, latency)
    return metrics.to_dict()


def _check_reachable(
    task: Task, space: SearchSpace, latency: LatencySettings, budget: Budget, limit: float
) -> None:
    smallest = apply_policy(task.model, space.uniform(space.ratio_high), task.input_shape)
    metrics = evaluate_model(smallest, task.val, task.input_shape, latency)
    value = metrics.metric(budget.metric)
    if value > limit:
        raise UsageError(
            f"The budget {budget.text!r} ({format_metric(budget.metric, limit)}) cannot be met: the "
            f"smallest model in the search space (every group pruned by {space.ratio_high:g}) "
            f"measures {format_metric(budget.metric, value)}; loosen the budget or raise --ratio-max "
            "(at most 0.95)."
        )


def _print_dry_run(log, task, groups, baseline, space, budget, latency) -> None:
    log(f"Task: {task.name}, input shape {task.input_shape}")
    log(
        f"Baseline (validation): accuracy {baseline['accuracy']:.4f}, "
        f"{format_metric('flops', baseline['flops'])}, {baseline['params']:,} params, "
        f"{format_metric('size_bytes', baseline['size_bytes'])}, latency "
        f"{baseline['latency_ms']:.3f} ms (batch {latency.batch_size}, {latency.threads} thread(s))"
    )
    if budget is not None:
        limit = budget.resolve(baseline[budget.metric])
        log(f"Budget: {budget.text} -> {format_metric(budget.metric, limit)}")
    log(f"{'group':32} {'channels':>8} {'FLOPs':>7}  layers")
    for g in groups:
        log(f"{g.name:32} {g.channels:>8} {100 * g.flops_share:>6.1f}%  {', '.join(g.modules)}")
    log("Search space:")
    for line in space.describe():
        log(f"  {line}")


def _print_summary(log, run: RunDir, report: dict[str, Any], budget: Budget) -> None:
    final = report["final"]
    if final:
        log(
            f"Chosen trial {report['chosen']['number']}: test accuracy {final['test_accuracy']:.4f} "
            f"(baseline {final['baseline_test_accuracy']:.4f}), latency {final['latency_ms']:.3f} ms "
            f"(baseline {final['baseline_latency_ms']:.3f} ms, "
            f"{100 * (1 - final['latency_ms'] / final['baseline_latency_ms']):.0f}% lower), "
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
