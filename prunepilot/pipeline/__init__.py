"""The job's stages, one orchestrator each: prepare (load, baseline, reachability, dry run) ->
search (screen, study, warm starts, executor, driver) -> finish (final selection, export, report);
and the commands on a finished run (revisit)."""

from prunepilot.pipeline.jobs import SearchResult, check_job, resume_spec, run_job
from prunepilot.pipeline.prepare import PreparedJob, measure_baseline, prepare
from prunepilot.pipeline.reach import check_reachable
from prunepilot.pipeline.revisit import export_trial, rebuild_report, repair_run

__all__ = [
    "PreparedJob",
    "SearchResult",
    "check_job",
    "check_reachable",
    "export_trial",
    "measure_baseline",
    "prepare",
    "rebuild_report",
    "repair_run",
    "resume_spec",
    "run_job",
]
