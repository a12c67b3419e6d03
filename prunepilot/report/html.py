"""``report.html``: the report in one self-contained page (styles and images inline)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from prunepilot.budget import format_cost
from prunepilot.report._labels import (
    families_line,
    front_caption,
    metric_change,
    metric_label,
    policy_blocks,
    precision,
    promoted_score,
    removed_blocks,
)
from prunepilot.report.markdown import export_lines, screening_sentence
from prunepilot.report.plot import pareto_plot, pyplot

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.met{color:#16794c}.missed{color:#b3261e}
code{background:#f3f3f3;padding:1px 4px}img{max-width:100%}
"""


def html_report(report: dict[str, Any]) -> str:
    """The whole report as one HTML page (no external files)."""
    metric = report["budget"]["metric"]
    final, base, label = report["final"], report["baseline"], metric_label(report)
    outcome = "met" if report["budget_met"] else "NOT met"
    parts = [
        f"<h1>prunepilot run <code>{_e(report['run']['name'])}</code></h1>",
        f"<p>Task {_e(report['task']['name'])}, {len(report['groups'])} prunable groups. Budget "
        f"{_e(report['budget']['text'])} = {_e(format_cost(metric, report['budget']['limit']))} on "
        f"{_e(metric)}: <b class='{'met' if report['budget_met'] else 'missed'}'>{outcome}</b>.</p>",
        *([f"<p>{_e(line[0].upper() + line[1:])}.</p>"] if (line := families_line(report)) else []),
    ]
    if final:
        parts += [
            "<h2>Baseline against chosen model</h2>",
            _table(
                ["", "baseline", "chosen", "change"],
                [
                    [
                        f"test {label}",
                        f"{final['baseline_test_accuracy']:.4f}",
                        f"{final['test_accuracy']:.4f}",
                        metric_change(report, final["baseline_test_accuracy"], final["test_accuracy"]),
                    ],
                    [
                        "latency (ms)",
                        f"{final['baseline_latency_ms']:.3f}",
                        f"{final['latency_ms']:.3f}",
                        f"{100 * (final['latency_ms'] / final['baseline_latency_ms'] - 1):+.1f}%",
                    ],
                    [
                        "FLOPs",
                        format_cost("flops", base["flops"]),
                        format_cost("flops", final["flops"]),
                        f"{100 * (final['flops'] / base['flops'] - 1):+.1f}%",
                    ],
                    [
                        "parameters",
                        f"{base['params']:,}",
                        f"{final['params']:,}",
                        f"{100 * (final['params'] / base['params'] - 1):+.1f}%",
                    ],
                ],
            ),  # fmt: skip
            f"<p>Chosen: trial {report['chosen']['number']}.</p>",
            "<ul>" + "".join(f"<li>{_e(line[2:])}</li>" for line in export_lines(final["export"])) + "</ul>",
            "<h2>The chosen policy, group by group</h2>",
            _img(_ratio_chart(report)),
        ]
    elif report["closest"]:
        closest = report["closest"]
        parts.append(
            f"<p>No trial met the budget. Closest: trial {closest['number']} at "
            f"{_e(format_cost(metric, closest['result'][metric]))}.</p>"
        )
    parts += [f"<h2>{_e(label.capitalize())} against cost</h2>", _img(pareto_plot(report))]
    by_number = {t["number"]: t for t in report["trials"]}
    rows = []
    promoted = any(t.get("promoted") for t in report["trials"])  # a column only when some point was
    for number in report["front"]:
        trial = by_number[number]
        result, groups = trial["result"], trial["policy"]["groups"]
        summary = ", ".join(f"{name} {g['ratio']:.2f} {g['criterion']}" for name, g in groups.items())
        summary += removed_blocks(trial["policy"]) + precision(trial)
        rows.append([str(number), f"{result['accuracy']:.4f}", f"{result['latency_ms']:.3f}",
                     format_cost("flops", result["flops"]), f"{result['params']:,}", summary,
                     *([promoted_score(trial)] if promoted else [])])  # fmt: skip
    parts += [
        "<h2>Pareto front within budget (validation)</h2>",
        f"<p>{_e(front_caption(report))}</p>",
        _table(
            ["trial", f"val {label}", "latency (ms)", "FLOPs", "params", "policy (group ratio criterion)",
             *(["after final fine-tune"] if promoted else [])],
            rows,
        ),
    ]
    screening = report.get("screening")
    if screening:
        parts.append(f"<p>{html.escape(screening_sentence(screening))}</p>")
    body = "\n".join(parts)
    title = f"prunepilot {_e(report['run']['name'])}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>" \
        f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n"  # fmt: skip


def _ratio_chart(report: dict[str, Any]) -> bytes:
    """The chosen policy's ratio per group; a group whose every layer was in a removed block is
    drawn whole, in grey."""
    policy = report["chosen"]["policy"]
    groups, blocks = policy["groups"], policy_blocks(policy)
    layers = {g["name"]: g["modules"] for g in report.get("groups", [])}
    names = list(groups)
    gone = [
        bool(blocks) and all(any(m.startswith(b + ".") for b in blocks) for m in layers.get(n, [n]))
        for n in names
    ]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2), dpi=110)
    ratios = [1.0 if out else groups[n]["ratio"] for n, out in zip(names, gone)]
    ax.barh(names, ratios, color=["tab:gray" if out else "tab:blue" for out in gone])
    for index, (name, out) in enumerate(zip(names, gone)):
        label = "block removed" if out else groups[name]["criterion"]
        ax.text(min(ratios[index], 0.8) + 0.01, index, label, va="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("pruning ratio (share of channels removed)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _img(png: bytes) -> str:
    return f"<img alt='chart' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _e(text: object) -> str:
    return html.escape(str(text))
