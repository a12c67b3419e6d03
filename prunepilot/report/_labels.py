"""Words the report's pages share: what the metric is called, how trials were scored, changes."""

from __future__ import annotations

from typing import Any

from prunepilot.evaluators.metric import Metric

__all__ = [
    "front_caption",
    "metric_change",
    "metric_label",
    "policy_blocks",
    "promoted_score",
    "removed_blocks",
    "trial_score_note",
]


def _metric(report: dict[str, Any]) -> Metric:
    """The report's metric (top-1 accuracy for reports written before the entry existed)."""
    return Metric(report.get("metric", {}).get("function"))


def metric_label(report: dict[str, Any]) -> str:
    """What the report calls the job's metric: ``accuracy`` (top-1), else the metric's name."""
    return _metric(report).label


def trial_score_note(report: dict[str, Any]) -> str:
    """How a trial's score was measured, from the run's trial settings (the plot's axis label)."""
    steps = report["trial_settings"]["finetune_steps"]
    if steps == 0:
        return "after BatchNorm recalibration, no fine-tune"
    return f"after BatchNorm recalibration and {steps} fine-tune steps"


def front_caption(report: dict[str, Any]) -> str:
    """The sentence above the front's table (report.md and report.html): what its metric is."""
    caption = (
        f"Validation {metric_label(report)} of each trial {trial_score_note(report)}: a ranking "
        "score, not the final model's (which is fine-tuned in full)."
    )
    promoted = [t["promoted"] for t in report["trials"] if t.get("promoted")]
    if promoted:
        caption += (
            f" The {len(promoted)} cheapest points were promoted: re-made with the final fine-tune "
            f"({promoted[0]['finetune_steps']} steps), their validation {metric_label(report)} is "
            "the last column."
        )
    return caption


def promoted_score(trial: dict[str, Any]) -> str:
    """A front point's validation metric after its promotion to the final fine-tune, or ``-``."""
    promoted = trial.get("promoted")
    return f"{promoted['val_accuracy']:.4f}" if promoted else "-"


def metric_change(report: dict[str, Any], before: float, after: float) -> str:
    """The change of the metric: in points for top-1 accuracy, else as a plain difference."""
    if _metric(report).function:
        return f"{after - before:+.4g}"
    return f"{100 * (after - before):+.2f} pt"


def removed_blocks(policy: dict[str, Any]) -> str:
    """``"; blocks removed: a, b"`` for a policy (as JSON) that removes blocks, else ``""``."""
    blocks = policy_blocks(policy)
    return f"; blocks removed: {', '.join(blocks)}" if blocks else ""


def precision(trial: dict[str, Any]) -> str:
    """``"; int8"`` for a trial (as plain data) measured in int8, else ``""``."""
    return "; int8" if trial.get("int8") else ""


def policy_blocks(policy: dict[str, Any]) -> list[str]:
    """The blocks a policy (as JSON) removes; older runs call them ``skip``, the oldest have none."""
    return list(policy.get("removed_blocks", policy.get("skip", [])))


def families_line(report: dict[str, Any]) -> str | None:
    """What the pruning families did in the run, in one line (None when none was used)."""
    final, parts = report.get("final") or {}, []
    distill = (report.get("trial_settings") or {}).get("distill")
    if distill:
        temperature, weight = distill["temperature"], distill["weight"]
        parts.append(f"distillation from the unpruned model (T {temperature:g}, weight {weight:g})")
    schedule = final.get("schedule") or {}
    if schedule.get("kind") == "gradual":
        steps = "/".join(map(str, schedule["steps"]))
        parts.append(f"gradual final pruning in {schedule['stages']} stages ({steps} steps)")
    slimming = report.get("slimming")
    if slimming:
        parts.append(
            slimming.get("note") or f"slimming warm-up of {slimming['steps']} steps (reg {slimming['reg']:g})"
        )
    if final.get("sparsity"):
        sparse = final["sparsity"]
        parts.append(f"{sparse['zeros']:,} of {sparse['weights']:,} weights zeroed (sizes zlib-compressed)")
    if final.get("input_features"):
        kept = final["input_features"]
        parts.append(f"{kept['kept']} of {kept['of']} input features kept")
    return "pruning families: " + "; ".join(parts) if parts else None
