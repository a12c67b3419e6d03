"""``pareto.png``: every trial, the front, the budget, the baseline and the chosen model."""

from __future__ import annotations

import io
import textwrap
from typing import Any

from prunepilot.report._labels import metric_label, trial_score_note

__all__ = ["pareto_plot"]

_METRIC_LABEL = {
    "latency_ms": "measured latency (ms)",
    "flops": "FLOPs per sample",
    "params": "parameters",
    "size_bytes": "size (bytes)",
}


def pareto_plot(report: dict[str, Any]) -> bytes:
    """The Pareto plot as PNG bytes: every trial, the front, the budget, baseline and choice."""
    metric = report["budget"]["metric"]
    limit = report["budget"]["limit"]
    trials = [t for t in report["trials"] if t["result"]]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for feasible, colour, label in ((True, "tab:blue", "within budget"), (False, "tab:gray", "over budget")):
        for int8, marker in ((False, "o"), (True, "^")):  # int8 trials are triangles
            points = [
                (t["result"][metric], t["result"]["accuracy"])
                for t in trials
                if t["feasible"] is feasible and bool(t.get("int8")) is int8
            ]
            if points:
                precision = ", int8" if int8 else (", fp32" if any(t.get("int8") for t in trials) else "")
                ax.scatter(*zip(*points), s=18, c=colour, marker=marker, alpha=0.7,
                           label=f"trial ({label}{precision})")  # fmt: skip
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
    promoted = [t for t in trials if t.get("promoted")]
    if promoted:  # each promoted point: a diamond at its final fine-tune's score, joined to its trial's
        for t in promoted:
            ax.plot([t["result"][metric]] * 2, [t["result"]["accuracy"], t["promoted"]["val_accuracy"]],
                    c="tab:purple", lw=0.8, alpha=0.6)  # fmt: skip
        ax.scatter([t["result"][metric] for t in promoted], [t["promoted"]["val_accuracy"] for t in promoted],
                   marker="D", s=30, c="tab:purple", label="after the final fine-tune")  # fmt: skip
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
    # Wrapped, so that the whole label fits the figure's height.
    ax.set_ylabel(
        "\n".join(textwrap.wrap(f"validation {label} ({trial_score_note(report)})", 44)), fontsize=9
    )
    ax.set_title(f"prunepilot: {label} vs cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def pyplot():
    """matplotlib's pyplot on the Agg backend, imported when a plot is drawn (not on every start)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
