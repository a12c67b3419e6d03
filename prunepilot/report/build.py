"""``report.json``: everything a run found, as plain data (see ``docs/report-schema.md``)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial

from prunepilot.search import pareto
from prunepilot.search.promotion import promoted_points
from prunepilot.search.study import RunStudy

__all__ = ["SCHEMA", "build_report", "screening", "speedups", "trial_record"]

SCHEMA = "prunepilot.report/2"


def trial_record(trial: FrozenTrial, promoted: dict[str, Any] | None = None) -> dict[str, Any]:
    """One trial as plain data (``promoted``: its front promotion's, if it was promoted)."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "feasible": pareto.violation(trial) == 0 if trial.values else None,
        "policy": trial.user_attrs.get("policy"),
        "result": trial.user_attrs.get("result"),
        "int8": bool((trial.user_attrs.get("result") or {}).get("int8")),
        "int8_fallback": (trial.user_attrs.get("result") or {}).get("int8_fallback"),
        "error": trial.user_attrs.get("error"),
        "interrupted": bool(trial.user_attrs.get("interrupted")),
        "screened": trial.user_attrs.get("screened"),
        "repaired_from": trial.user_attrs.get("repaired_from"),
        "filled_from": trial.user_attrs.get("filled_from"),
        "raised_from": trial.user_attrs.get("raised_from"),
        "predicted": trial.user_attrs.get("predicted"),
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
        "worker_s": trial.user_attrs.get("worker_s"),
        "promoted": promoted,
    }


#: A FLOPs cut at least this large with a latency gain below MIN_SPEEDUP "bought no latency".
NOTABLE_FLOPS_CUT = 0.10
MIN_SPEEDUP = 1.02


def speedups(front: list[FrozenTrial], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """For each point of ``front``: measured latency speed-up next to the FLOPs cut."""
    rows = []
    for trial in front:
        result = trial.user_attrs["result"]
        speedup = baseline["latency_ms"] / result["latency_ms"]
        cut = 1 - result["flops"] / baseline["flops"]
        rows.append({
            "number": trial.number,
            "flops_reduction": cut,
            "latency_speedup": speedup,
            "faster": speedup >= MIN_SPEEDUP,
            "flops_cut_bought_no_latency": cut >= NOTABLE_FLOPS_CUT and speedup < MIN_SPEEDUP,
        })  # fmt: skip
    return rows


def screening(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Budget-aware sampling in numbers: policies screened out before training, and the share of
    trained trials that measured over budget anyway."""
    trained = [t for t in trials if t["state"] == "COMPLETE"]
    over = sum(t["feasible"] is False for t in trained)
    return {
        "screened_out": sum(bool(t["screened"]) for t in trials),
        "repaired": sum(t["repaired_from"] is not None for t in trials),
        "filled": sum(t.get("filled_from") is not None for t in trials),
        "raised": sum(t.get("raised_from") is not None for t in trials),
        "trained": len(trained),
        "trained_over_budget": over,
        "trained_over_budget_share": over / len(trained) if trained else None,
    }


def promotion(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Front promotion in numbers: points promoted, and their worker time as a share of the trials'."""
    promoted = [t["promoted"] for t in trials if t.get("promoted")]
    trial_s = sum(t["worker_s"] or 0.0 for t in trials if t["state"] == "COMPLETE")
    spent = sum(p["worker_s"] for p in promoted)
    share = spent / trial_s if trial_s else None
    return {"promoted": len(promoted), "worker_s": spent, "share_of_trials": share}


def build_report(
    study: optuna.Study,
    header: dict[str, Any],
    chosen: FrozenTrial | None,
    final: dict[str, Any] | None,
) -> dict[str, Any]:
    """Assembles ``report.json``'s content.

    Args:
        study: The run's study.
        header: run, job, task, groups, baseline, budget and trial_settings entries (plain data;
            trial_settings is :meth:`TrialSettings.to_dict`'s, which labels the trials' metric).
        chosen: The chosen trial, or None when no trial met the budget.
        final: The final model's measurements, or None.
    """
    closest = pareto.closest(study)
    full_front = pareto.full_front(study)
    promoted = promoted_points(study) if isinstance(study, RunStudy) else {}
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    trials = [trial_record(t, promoted.get(t.number)) for t in finished]
    return {
        "schema": SCHEMA,
        **header,
        "trials": trials,
        "screening": screening(trials),
        "front": [t.number for t in pareto.feasible_front(study)],
        "speedups": speedups(full_front, header["baseline"]),
        "full_front": [t.number for t in full_front],
        "chosen": trial_record(chosen) if chosen else None,
        "closest": trial_record(closest) if chosen is None and closest else None,
        "promotion": promotion(trials),
        "final": final,
        "budget_met": bool(final and final.get("budget_met")),
    }
