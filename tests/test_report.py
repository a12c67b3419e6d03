"""The report: speed-up next to FLOPs cut, and FLOPs cuts that bought no latency flagged."""

import optuna

from prunepilot.budget import BudgetLimit
from prunepilot.report import build_report, markdown
from prunepilot.search.driver import tell_outcome
from prunepilot.search.executors import TrialOutcome
from prunepilot.trial import TrialResult, TrialSettings

BASELINE = {"accuracy": 1.0, "flops": 1000, "params": 100, "size_bytes": 400, "latency_ms": 10.0}


def _study(points):
    study = optuna.create_study(directions=["maximize", "minimize"])
    for accuracy, flops, latency in points:
        trial = study.ask()
        trial.set_user_attr(
            "policy",
            {
                "schema": "prunepilot.policy/1",
                "round_to": 1,
                "groups": {"a": {"ratio": 0.5, "criterion": "l1"}},
            },
        )
        result = TrialResult(accuracy, flops, 50, 200, latency, {})
        tell_outcome(study, trial, TrialOutcome(result), BudgetLimit("latency_ms", 20.0))
    return study


def test_a_flops_cut_without_a_speed_up_is_flagged():
    study = _study([(0.99, 500, 5.0), (0.999, 800, 9.99)])  # trial 1: 20% fewer FLOPs, no faster
    header = {"run": {"name": "t"}, "task": {"name": "x"}, "groups": [], "baseline": BASELINE,
              "budget": {"metric": "latency_ms", "limit": 20.0, "text": "20ms"},
              "trial_settings": TrialSettings().to_dict()}  # fmt: skip
    report = build_report(study, header, None, None)
    rows = {row["number"]: row for row in report["speedups"]}
    assert rows[0]["latency_speedup"] == 2.0 and rows[0]["flops_reduction"] == 0.5
    assert rows[0]["flops_cut_bought_no_latency"] is False
    assert rows[1]["flops_cut_bought_no_latency"] is True
    text = markdown(report, "pareto.png")
    assert "Trials [1] cut FLOPs by 10% or more but were not measurably faster." in text
    assert "| 0 | 50% | 2.00x |  |" in text
