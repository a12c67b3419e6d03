"""Front promotion: in a run that maps the whole trade-off, the front's cheapest points are given
the final fine-tune, so that the front shows what they reach rather than what a short fine-tune
reached.

A trial's score is what ``finetune_steps`` reach; hard-pruned models are far from done by then
(front points under 20% of the baseline's latency gained about 20 points with the final fine-tune,
``benchmarks/promotion.py``), while lightly pruned ones have little left to gain. So points are
promoted cheapest first, each re-made from its policy with the final fine-tune's length and scored
on the validation split, as long as the promotions' estimated worker time stays within a share of
the trials'. A promoted point keeps its trial's measured costs (the same policy gives the same
architecture).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from optuna.trial import FrozenTrial

from prunepilot.policies import Policy
from prunepilot.search.executors import TrialExecutor
from prunepilot.search.pareto import feasible_front
from prunepilot.search.study import RunStudy
from prunepilot.trial import TrialSettings

__all__ = ["PROMOTION_SHARE", "promote_front", "promoted_points"]

#: The promotions' worker time, at most this share of the trials' (the issue's bound on the cost).
PROMOTION_SHARE = 0.3


def promoted_points(study: RunStudy) -> dict[int, dict[str, Any]]:
    """The run's promoted points: trial number -> ``val_accuracy``, ``finetune_steps``, ``worker_s``."""
    kept = study.user_attrs.get(_key(study), {})
    return {int(number): record for number, record in kept.items()}


def promote_front(
    study: RunStudy,
    executor: TrialExecutor,
    settings: TrialSettings,
    final_steps: int,
    share: float = PROMOTION_SHARE,
    log: Callable[[str], None] = print,
) -> list[int]:
    """Gives the front's cheapest points the final fine-tune, while the promotions'
    estimated worker time stays within ``share`` of the trials' (see the module's docstring);
    each result is kept in the study as it comes in (an interrupted run keeps what it promoted).

    Returns:
        The trial numbers promoted by this call, cheapest first.
    """
    done = promoted_points(study)
    trials = study.get_trials(deepcopy=False)
    allowance = share * sum(t.user_attrs.get("worker_s", 0.0) for t in trials if "result" in t.user_attrs)
    allowance -= sum(record["worker_s"] for record in done.values())
    front = [t for t in feasible_front(study) if t.number not in done]  # cheapest first
    chosen = []
    for trial in front:
        estimate = _estimated_seconds(trial, final_steps / max(settings.finetune_steps, 1))
        if estimate > allowance:
            break
        allowance -= estimate
        chosen.append(trial)
    if not chosen:
        return []
    log(f"Promoting {len(chosen)} front point(s) to the final fine-tune ({final_steps} steps) ...")
    promote = _promotion_settings(settings, final_steps)
    pending = {}
    queue = list(chosen)
    while queue or pending:
        while queue and len(pending) < executor.capacity:
            trial = queue.pop(0)
            pending[executor.submit(Policy.from_dict(trial.user_attrs["policy"]), promote)] = trial
        handle, outcome = executor.wait_any()
        trial = pending.pop(handle)
        if outcome.result is None:
            log(f"Promotion of trial {trial.number} failed ({outcome.error}); it shows its trial score.")
            continue
        done[trial.number] = {
            "val_accuracy": outcome.result.accuracy,
            "finetune_steps": final_steps,
            "worker_s": outcome.worker_s,
        }
        study.set_user_attr(_key(study), {str(n): record for n, record in done.items()})
    return [t.number for t in chosen if t.number in done]


def _key(study: RunStudy) -> str:
    return f"promoted:{study.run}"


def _promotion_settings(settings: TrialSettings, final_steps: int) -> TrialSettings:
    """The trial settings with the final fine-tune's length; latency timed once, briefly, and not
    against the base model (its costs are the trial's)."""
    brief = replace(settings.latency, warmup=0, repeats=1)
    return replace(settings, finetune_steps=final_steps, latency=brief, reference_latency_ms=None)


def _estimated_seconds(trial: FrozenTrial, steps_ratio: float) -> float:
    """A promotion's worker time: the trial's, with its fine-tune ``steps_ratio`` times longer and
    without its latency measurement."""
    timings = trial.user_attrs["result"].get("timings") or {}
    worker = trial.user_attrs.get("worker_s") or sum(timings.values())
    return worker + (steps_ratio - 1) * timings.get("fine_tune", 0.0) - timings.get("latency", 0.0)
