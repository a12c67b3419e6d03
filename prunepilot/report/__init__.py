"""Reports: ``report.json`` (everything), ``report.md``, ``report.html`` and ``pareto.png``."""

from __future__ import annotations

from typing import Any

from optuna.trial import FrozenTrial

from prunepilot.report._labels import metric_label
from prunepilot.report.build import SCHEMA, build_report
from prunepilot.report.html import html_report
from prunepilot.report.markdown import markdown
from prunepilot.report.plot import pareto_plot
from prunepilot.rundir import RunDir, write_atomically

__all__ = [
    "REPORT_FILES", "SCHEMA", "build_report", "html_report", "markdown", "metric_label", "pareto_plot",
    "write_report",
]  # fmt: skip


#: The report files a run holds (re-created by ``prunepilot report``).
REPORT_FILES = ("report.json", "report.md", "report.html")


def write_report(
    run: RunDir, study, header: dict[str, Any], chosen: FrozenTrial | None, final: dict[str, Any] | None
) -> dict[str, Any]:
    """Writes report.json, pareto.png, report.md and report.html into ``run``; returns the report."""
    report = build_report(study, header, chosen, final)
    run.write_json("report.json", report)
    write_atomically(run.file("pareto.png"), pareto_plot(report))
    write_atomically(run.file("report.md"), markdown(report, "pareto.png"))
    write_atomically(run.file("report.html"), html_report(report))
    return report
