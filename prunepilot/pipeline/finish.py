"""Stage three of a job: the final model chosen among the front's best points, exported (each
export reloaded and checked), and the report written."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from prunepilot._version import __version__
from prunepilot.budget import BudgetLimit, format_cost
from prunepilot.errors import PrunepilotError
from prunepilot.export import export_all, export_errors
from prunepilot.final import Finalized, finalize_candidates
from prunepilot.inputs import dtype_of
from prunepilot.phases import PhaseClock
from prunepilot.pipeline.prepare import PreparedJob
from prunepilot.pipeline.search import SearchOutcome, predictor_summary
from prunepilot.report import metric_label, write_report
from prunepilot.rundir import RunDir, write_atomically
from prunepilot.search.pareto import maximizes, ranked_front

__all__ = ["finish_stage", "job_header"]


def finish_stage(
    prepared: PreparedJob,
    run: RunDir,
    baseline: dict[str, Any],
    budget: BudgetLimit,
    outcome: SearchOutcome,
    log: Callable[[str], None],
    clock: PhaseClock | None = None,
) -> tuple[dict[str, Any], Finalized | None]:
    """Finalizes the front's best points, exports the chosen model and writes the report, with
    each phase's wall time (``clock``'s) in it and printed last.

    Returns:
        The report, and the chosen model made for real (None when no trial completed).

    Raises:
        PrunepilotError: when every trial failed (the report is written first).
    """
    spec, task, study, settings = prepared.spec, prepared.task, outcome.study, outcome.settings
    clock = clock or PhaseClock()
    with clock.phase("final"):
        final_settings = spec.final_settings(settings)
        done = finalize_candidates(
            ranked_front(study), task, final_settings, budget, log, spec.device, maximizes(study)
        )
    if done is not None:
        int8 = " and int8 ONNX" if done.deployed is not None and done.deployed.quantized else ""
        log(f"Exporting trial {done.trial.number}: TorchScript, ONNX, plan{int8}, each checked ...")
        with clock.phase("export"):
            done.final["export"] = export_all(
                done.model, done.plan, prepared.source, task, settings, run.path, deployed=done.deployed
            )
        for failed in export_errors(done.final["export"]):
            log(f"warning: export skipped, {failed}")
        write_atomically(run.file("policy.json"), done.policy.to_json() + "\n")
        # The study keeps the final measurements too, so that `prunepilot report` can rebuild them.
        study.set_user_attr(f"final:{spec.name}", {"trial": done.trial.number, "final": done.final})
    header = {
        "run": {"name": spec.name, "path": str(run.path), "prunepilot": __version__,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "search_wall_s": outcome.wall_s, "trials_run_this_time": outcome.trials_run,
                **clock.to_dict()},
        **job_header(prepared, baseline, budget),
        "trial_settings": settings.to_dict(),
        "latency_predictor": predictor_summary(outcome.screen),
    }  # fmt: skip
    report = write_report(run, study, header, done and done.trial, done and done.final)
    completed = any(t["state"] == "COMPLETE" for t in report["trials"])
    _print_summary(log, run, report, budget, completed)
    log(clock.summary())
    if not completed:
        errors = Counter(t["error"] for t in report["trials"] if t["error"])
        if errors:
            common, count = errors.most_common(1)[0]
            raise PrunepilotError(
                f"every trial failed ({count} of {len(report['trials'])} with: {common}); "
                f"the report is in {run.path}."
            )
    return report, done


def job_header(prepared: PreparedJob, baseline: dict[str, Any], budget: BudgetLimit) -> dict[str, Any]:
    """The report's entries that describe the job: its settings, task, metric, groups, baseline
    and budget."""
    spec, task = prepared.spec, prepared.task
    return {
        "job": spec.to_dict(),
        "task": {"name": task.name, "input_shape": list(task.input_shape),
                 "input_dtype": dtype_of(task.input_shape), "device": spec.device},
        "metric": prepared.settings.metric.to_dict(),
        "runtime": {"name": prepared.settings.runtime, "quantize": prepared.spec.quantize,
                    "int8_note": prepared.int8_note},
        "groups": [g.to_dict() for g in prepared.groups],
        "blocks": list(prepared.space.blocks),
        "baseline": baseline,
        "budget": {**budget.to_dict(), "baseline_value": baseline[budget.cost],
                   "size_measure": prepared.settings.size_measure},
        "slimming": prepared.slimming,
        "features": prepared.features,
    }  # fmt: skip


def _print_summary(log, run: RunDir, report: dict[str, Any], budget: BudgetLimit, completed: bool) -> None:
    """The chosen model's line, or why there is none (unless no trial completed: an error says so)."""
    final = report["final"]
    if final:
        log(
            f"Chosen trial {report['chosen']['number']}: "
            f"test {metric_label(report)} {final['test_accuracy']:.4f} "
            f"(baseline {final['baseline_test_accuracy']:.4f}), latency {final['latency_ms']:.3f} ms "
            f"(baseline {final['baseline_latency_ms']:.3f} ms, "
            f"{_change(final['latency_ms'], final['baseline_latency_ms'])}"
            f"{', int8' if final.get('int8') else ''}{_runtime(report)}), "
            f"budget {'met' if report['budget_met'] else 'NOT met'}."
        )
    elif completed:
        closest = report["closest"]
        where = (
            f" Closest: trial {closest['number']} at "
            f"{format_cost(budget.cost, closest['result'][budget.cost])}."
            if closest
            else ""
        )
        print(f"No trial met the budget {budget.text}.{where}", file=sys.stderr)
    log(f"Report: {run.file('report.md')}")


def _runtime(report: dict[str, Any]) -> str:
    name = report.get("runtime", {}).get("name", "torch")
    return "" if name == "torch" else f", in {name}"


def _change(value: float, reference: float) -> str:
    ratio = value / reference - 1
    return f"{100 * abs(ratio):.0f}% {'lower' if ratio <= 0 else 'higher'}"
