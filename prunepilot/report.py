"""The run's report: ``report.json`` (everything), ``report.md`` and a Pareto plot."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import FrozenTrial  # noqa: E402

from prunepilot.budget import format_metric  # noqa: E402
from prunepilot.evaluators.score import Metric  # noqa: E402
from prunepilot.search import pareto  # noqa: E402

SCHEMA = "prunepilot.report/1"
_METRIC_LABEL = {
    "latency_ms": "measured latency (ms)",
    "flops": "FLOPs per sample",
    "params": "parameters",
    "size_bytes": "size (bytes)",
}


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
    return (
        f"Validation {metric_label(report)} of each trial {trial_score_note(report)}: a ranking "
        "score, not the final model's (which is fine-tuned in full)."
    )


def metric_change(report: dict[str, Any], before: float, after: float) -> str:
    """The change of the metric: in points for top-1 accuracy, else as a plain difference."""
    if _metric(report).function:
        return f"{after - before:+.4g}"
    return f"{100 * (after - before):+.2f} pt"


def removed_blocks(policy: dict[str, Any]) -> str:
    """``"; blocks removed: a, b"`` for a policy (as JSON) that removes blocks, else ``""``."""
    skip = policy.get("skip", [])  # policies written before block removal have none
    return f"; blocks removed: {', '.join(skip)}" if skip else ""


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as plain data."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "feasible": pareto.violation(trial) == 0 if trial.values else None,
        "policy": trial.user_attrs.get("policy"),
        "result": trial.user_attrs.get("result"),
        "error": trial.user_attrs.get("error"),
        "interrupted": bool(trial.user_attrs.get("interrupted")),
        "screened": trial.user_attrs.get("screened"),
        "repaired_from": trial.user_attrs.get("repaired_from"),
        "filled_from": trial.user_attrs.get("filled_from"),
        "raised_from": trial.user_attrs.get("raised_from"),
        "predicted": trial.user_attrs.get("predicted"),
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
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
    trials = [trial_record(t) for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
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
        "final": final,
        "budget_met": bool(final and final.get("budget_met")),
    }


def pareto_plot(report: dict[str, Any]) -> bytes:
    """The Pareto plot as PNG bytes: every trial, the front, the budget, baseline and choice."""
    metric = report["budget"]["metric"]
    limit = report["budget"]["limit"]
    trials = [t for t in report["trials"] if t["result"]]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for feasible, colour, label in ((True, "tab:blue", "within budget"), (False, "tab:gray", "over budget")):
        points = [(t["result"][metric], t["result"]["accuracy"]) for t in trials if t["feasible"] is feasible]
        if points:
            ax.scatter(*zip(*points), s=18, c=colour, alpha=0.7, label=f"trial ({label})")
    by_number = {t["number"]: t for t in trials}
    front = [by_number[n] for n in report["full_front"] if n in by_number]
    if front:
        ax.step(
            [t["result"][metric] for t in front],
            [t["result"]["accuracy"] for t in front],
            where="post",
            c="tab:orange",
            lw=1.2,
            label="Pareto front",
        )
    base = report["baseline"]
    ax.scatter([base[metric]], [base["accuracy"]], marker="*", s=160, c="black", label="baseline")
    ax.axvline(limit, ls="--", c="tab:red", lw=1, label=f"budget ({report['budget']['text']})")
    if report["chosen"]:
        result = report["chosen"]["result"]
        ax.scatter(
            [result[metric]],
            [result["accuracy"]],
            s=130,
            facecolors="none",
            edgecolors="tab:green",
            linewidths=2,
            label="chosen",
        )
    ax.set_xlabel(_METRIC_LABEL[metric])
    label = metric_label(report)
    ax.set_ylabel(f"validation {label} ({trial_score_note(report)})")
    ax.set_title(f"prunepilot: {label} vs cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def markdown(report: dict[str, Any], plot_name: str) -> str:
    """``report.md``: the outcome in a minute's reading."""
    metric = report["budget"]["metric"]
    base = report["baseline"]
    final = report["final"]
    label = metric_label(report)
    lines = [f"# prunepilot run `{report['run']['name']}`", ""]
    outcome = "met" if report["budget_met"] else "NOT met"
    lines += [
        f"- task: {report['task']['name']}, {len(report['groups'])} prunable groups",
        f"- budget: {report['budget']['text']} = {format_metric(metric, report['budget']['limit'])}"
        f" on {metric} - **{outcome}**"
        + (
            f" (final model judged against {format_metric(metric, final['budget_limit'])}, from the "
            "baseline re-measured alongside it)"
            if final and final.get("budget_limit") != report["budget"]["limit"]
            else ""
        ),
        f"- trials: {sum(t['state'] == 'COMPLETE' for t in report['trials'])} complete, "
        f"{sum(t['state'] == 'FAIL' and not t['interrupted'] for t in report['trials'])} failed, "
        f"{sum(bool(t['interrupted']) for t in report['trials'])} interrupted and re-run",
        _screening_line(report["screening"]),
        "",
    ]
    if final:
        lines += [
            "## Baseline against chosen model",
            "",
            "| | baseline | chosen | change |",
            "|---|---|---|---|",
            f"| test {label} | {final['baseline_test_accuracy']:.4f} | {final['test_accuracy']:.4f} "
            f"| {metric_change(report, final['baseline_test_accuracy'], final['test_accuracy'])} |",
            f"| latency (ms) | {final['baseline_latency_ms']:.3f} | {final['latency_ms']:.3f} "
            f"| {100 * (final['latency_ms'] / final['baseline_latency_ms'] - 1):+.1f}% |",
            f"| FLOPs | {format_metric('flops', base['flops'])} | {format_metric('flops', final['flops'])} "
            f"| {100 * (final['flops'] / base['flops'] - 1):+.1f}% |",
            f"| parameters | {base['params']:,} | {final['params']:,} "
            f"| {100 * (final['params'] / base['params'] - 1):+.1f}% |",
            f"| size | {format_metric('size_bytes', base['size_bytes'])} "
            f"| {format_metric('size_bytes', final['size_bytes'])} "
            f"| {100 * (final['size_bytes'] / base['size_bytes'] - 1):+.1f}% |",
            "",
            f"Chosen: trial {report['chosen']['number']}.",
            "",
            *export_lines(final["export"]),
            "",
        ]
    elif report["closest"]:
        closest = report["closest"]["result"]
        lines += [
            "No trial met the budget. Closest: trial "
            f"{report['closest']['number']} at {format_metric(metric, closest[metric])} "
            f"(validation {label} {closest['accuracy']:.4f}). Loosen the budget, raise --ratio-max, "
            "or run more trials.",
            "",
        ]
    lines += [f"![Pareto front]({plot_name})", "", "## Pareto front (validation, within budget)", ""]
    lines += [front_caption(report), ""]
    lines += [
        f"| trial | val {label} | latency (ms) | FLOPs | params | policy |",
        "|---|---|---|---|---|---|",
    ]
    by_number = {t["number"]: t for t in report["trials"]}
    for number in report["front"]:
        t = by_number[number]
        r = t["result"]
        ratios = [g["ratio"] for g in t["policy"]["groups"].values()]
        mean = sum(ratios) / len(ratios) if ratios else 0.0
        lines.append(
            f"| {number} | {r['accuracy']:.4f} | {r['latency_ms']:.3f} | "
            f"{format_metric('flops', r['flops'])} | {r['params']:,} | mean ratio {mean:.2f}"
            f"{removed_blocks(t['policy'])} |"
        )
    lines += [
        "",
        "## Measured speed-up against FLOPs cut (every point of the front, within budget or not)",
        "",
        "| trial | FLOPs cut | latency speed-up | |",
        "|---|---|---|---|",
    ]
    for row in report.get("speedups", []):
        flag = "**FLOPs cut bought no latency**" if row["flops_cut_bought_no_latency"] else ""
        lines.append(
            f"| {row['number']} | {100 * row['flops_reduction']:.0f}% | "
            f"{row['latency_speedup']:.2f}x | {flag} |"
        )
    wasted = [row["number"] for row in report.get("speedups", []) if row["flops_cut_bought_no_latency"]]
    if wasted:
        lines += ["", f"Trials {wasted} cut FLOPs by 10% or more but were not measurably faster."]
    return "\n".join(lines) + "\n"


def export_lines(export: dict[str, Any]) -> list[str]:
    """One line per exported artefact: its file, how it was checked, its latency in its runtime."""
    lines = [
        f"- `{export['torchscript']}` (TorchScript): reloaded, max difference "
        f"{export['torchscript_max_abs_diff']:.2g}"
        + (f"; {export['torchscript_latency_ms']:.3f} ms" if "torchscript_latency_ms" in export else ""),
    ]
    if "onnx" in export:
        lines.append(
            f"- `{export['onnx']}` (ONNX): run in ONNX Runtime on test inputs, max difference "
            f"{export['onnx_max_abs_diff']:.2g}; {export['onnx_latency_ms']:.3f} ms in ONNX Runtime"
        )
    if "plan" in export:
        lines.append(
            f"- `{export['plan']}` + `{export['plan_weights']}` (plan: the base class, the channels "
            f"removed, a state dict for weights_only loading): rebuilt, max difference "
            f"{export['plan_max_abs_diff']:.2g}"
        )
    lines.append(f"- `{export['policy']}`: the chosen policy")
    return lines


def screening_sentence(numbers: dict[str, Any]) -> str:
    """Budget-aware sampling in one sentence (report.md and report.html)."""
    share = numbers["trained_over_budget_share"]
    return (
        f"Budget-aware sampling: {numbers['screened_out']} sampled policies screened out before "
        f"training (predicted over budget), {numbers['repaired']} repaired, "
        f"{numbers.get('filled', 0)} filled up to the budget, {numbers.get('raised', 0)} raised to it; "
        f"{numbers['trained_over_budget']} of {numbers['trained']} trained trials measured over budget"
        + (f" ({100 * share:.0f}%)" if share is not None else "")
        + "."
    )


def _screening_line(numbers: dict[str, Any]) -> str:
    return "- " + screening_sentence(numbers)
