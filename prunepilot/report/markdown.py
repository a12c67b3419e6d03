"""``report.md``: the outcome in a minute's reading."""

from __future__ import annotations

from typing import Any

from prunepilot.budget import format_cost
from prunepilot.export import export_errors
from prunepilot.report._labels import (
    families_line,
    front_caption,
    metric_change,
    metric_label,
    precision,
    promoted_score,
    removed_blocks,
)

__all__ = ["export_lines", "markdown", "screening_sentence"]


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
        f"- budget: {report['budget']['text']} = {format_cost(metric, report['budget']['limit'])}"
        f" on {metric} - **{outcome}**"
        + (
            f" (final model judged against {format_cost(metric, final['budget_limit'])}, from the "
            "baseline re-measured alongside it)"
            if final and final.get("budget_limit") != report["budget"]["limit"]
            else ""
        ),
        f"- trials: {sum(t['state'] == 'COMPLETE' for t in report['trials'])} complete, "
        f"{sum(t['state'] == 'FAIL' and not t['interrupted'] for t in report['trials'])} failed, "
        f"{sum(bool(t['interrupted']) for t in report['trials'])} interrupted and re-run",
        _screening_line(report["screening"]),
        *([f"- {line}"] if (line := families_line(report)) else []),
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
            f"| FLOPs | {format_cost('flops', base['flops'])} | {format_cost('flops', final['flops'])} "
            f"| {100 * (final['flops'] / base['flops'] - 1):+.1f}% |",
            f"| parameters | {base['params']:,} | {final['params']:,} "
            f"| {100 * (final['params'] / base['params'] - 1):+.1f}% |",
            f"| size | {format_cost('size_bytes', base['size_bytes'])} "
            f"| {format_cost('size_bytes', final['size_bytes'])} "
            f"| {100 * (final['size_bytes'] / base['size_bytes'] - 1):+.1f}% |",
            "",
            f"Chosen: trial {report['chosen']['number']}.",
            "",
            *_head_lines(final.get("heads", {})),
            *export_lines(final["export"]),
            "",
        ]
    elif report["closest"]:
        closest = report["closest"]["result"]
        lines += [
            "No trial met the budget. Closest: trial "
            f"{report['closest']['number']} at {format_cost(metric, closest[metric])} "
            f"(validation {label} {closest['accuracy']:.4f}). Loosen the budget, raise --ratio-max, "
            "or run more trials.",
            "",
        ]
    lines += [f"![Pareto front]({plot_name})", "", "## Pareto front (validation, within budget)", ""]
    lines += [front_caption(report), ""]
    promoted = any(t.get("promoted") for t in report["trials"])  # a column only when some point was
    lines += [
        f"| trial | val {label} | latency (ms) | FLOPs | params | policy |"
        + (" after final fine-tune |" if promoted else ""),
        "|---|---|---|---|---|---|" + ("---|" if promoted else ""),
    ]
    by_number = {t["number"]: t for t in report["trials"]}
    for number in report["front"]:
        t = by_number[number]
        r = t["result"]
        ratios = [g["ratio"] for g in t["policy"]["groups"].values()]
        mean = sum(ratios) / len(ratios) if ratios else 0.0
        lines.append(
            f"| {number} | {r['accuracy']:.4f} | {r['latency_ms']:.3f} | "
            f"{format_cost('flops', r['flops'])} | {r['params']:,} | mean ratio {mean:.2f}"
            f"{removed_blocks(t['policy'])}{precision(t)} |" + (f" {promoted_score(t)} |" if promoted else "")
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
    lines = []
    if "torchscript" in export:
        lines.append(
            f"- `{export['torchscript']}` (TorchScript): reloaded, max difference "
            f"{export['torchscript_max_abs_diff']:.2g}"
            + (f"; {export['torchscript_latency_ms']:.3f} ms" if "torchscript_latency_ms" in export else "")
        )
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
    lines += [f"- not exported: {failed}" for failed in export_errors(export)]
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


def _head_lines(heads: dict[str, dict[str, int]]) -> list[str]:
    """Attention heads kept per layer (none for a model without attention)."""
    if not heads:
        return []
    kept = ", ".join(f"`{name}` {h['kept']}/{h['baseline']}" for name, h in heads.items())
    return [f"Attention heads kept (whole heads removed): {kept}.", ""]
