"""Commands on a run: re-create its report from the study (``prunepilot report``), make and export
another front point (``prunepilot export --trial N``), mend a damaged journal (``prunepilot repair``)."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from optuna.trial import TrialState

from prunepilot._version import __version__
from prunepilot.errors import EXIT_BUDGET_NOT_MET, EXIT_OK, PrunepilotError, UsageError
from prunepilot.export import EXPORT_FORMATS, export_all, export_errors
from prunepilot.final import finalize, score_on_test
from prunepilot.pipeline.finish import job_header
from prunepilot.pipeline.prepare import prepare
from prunepilot.pipeline.search import open_run_study
from prunepilot.policies import Policy
from prunepilot.report import REPORT_FILES, write_report
from prunepilot.rundir import RunDir, resume_command_line, write_atomically
from prunepilot.search.journal import repair_journal
from prunepilot.search.study import STUDY_FILE, RunStudy, storage_location
from prunepilot.spec import JobSpec, ResolvedJob
from prunepilot.tasks import Task
from prunepilot.trust import check_trusted, named_code

__all__ = ["export_trial", "rebuild_report", "repair_run"]


def rebuild_report(run_path: str, log: Callable[[str], None] | None = None, trust: bool = False) -> int:
    """Re-creates a run's report files from its study. The final model's measurements come from the
    run's last report when it has one; nothing is retrained.

    Args:
        run_path: The run directory.
        log: Where progress lines go (stdout by default).
        trust: Import the code a run not made on this machine names (see :mod:`prunepilot.trust`).

    Returns:
        0 when the budget was met, 3 when not.
    """
    log = log or (lambda text: print(text, flush=True))
    run, job = _open_finished(run_path, trust)
    spec = job.spec
    with run:
        prepared = prepare(job, on_device=False, progress=False, check_data=False, slimming=False)
        baseline = run.read_json("baseline.json")
        budget = job.budget_limit(baseline)
        previous = run.read_json("report.json") if run.file("report.json").is_file() else {}
        study = open_run_study(spec, run, reading=True)
        header = {
            "run": {**previous.get("run", {}), "name": spec.name, "path": str(run.path),
                    "prunepilot": __version__, "report_rebuilt": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
            **job_header(prepared, baseline, budget),
            "slimming": previous.get("slimming"),
            "trial_settings": previous.get("trial_settings", prepared.settings.to_dict()),
            "latency_predictor": previous.get("latency_predictor"),
        }  # fmt: skip
        kept = study.user_attrs.get(f"final:{spec.name}") or {
            "trial": (previous.get("chosen") or {}).get("number"),
            "final": previous.get("final"),
        }
        # A journal cut short may have lost the chosen trial's result: then nothing is chosen.
        chosen = next(
            (t for t in study.trials if t.number == kept["trial"] and "result" in t.user_attrs
             and t.state.name == "COMPLETE"), None,
        )  # fmt: skip
        _keep_a_fuller_report(run, previous, study)
        report = write_report(run, study, header, chosen, kept["final"] if chosen else None)
        log(f"Report re-created from the study: {run.file('report.html')}")
    return EXIT_OK if report["budget_met"] else EXIT_BUDGET_NOT_MET


def _keep_a_fuller_report(run: RunDir, previous: dict, study: RunStudy) -> None:
    """Keeps the run's report files as ``<name>.prev`` when its study now holds fewer complete trials
    than that report showed (a journal cut or emptied since), and says so."""
    before = sum(t.get("state") == "COMPLETE" for t in previous.get("trials", []))
    now = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if now >= before:
        return
    for name in REPORT_FILES:
        if run.file(name).is_file() and not run.file(name).is_symlink():
            write_atomically(run.file(name + ".prev"), run.file(name).read_bytes())
    print(
        f"prunepilot: warning: the study holds {now} complete trial(s) where the last report showed "
        f"{before}; that report is kept as report.json.prev (and .md.prev, .html.prev).",
        file=sys.stderr,
    )


def export_trial(
    run_path: str | Path,
    number: int,
    formats: tuple[str, ...],
    log: Callable[[str], None] | None = None,
    task: Task | None = None,
    trust: bool = False,
) -> Path:
    """Re-creates trial ``number``'s model (its policy on a fresh copy of the base model, the final
    fine-tune) and exports it into ``RUN/exports/trial-N/``, checked as the run's own exports are.

    Args:
        run_path: The run directory.
        number: A completed trial of the run.
        formats: Keys of :data:`~prunepilot.export.EXPORT_FORMATS`.
        log: Where progress lines go (stdout by default).
        task: The model and data, for a run searched from Python (the command line re-creates the
            others from the job).
        trust: Import the code a run not made on this machine names (see :mod:`prunepilot.trust`).

    Returns:
        The folder holding the exports.
    """
    log = log or (lambda text: print(text, flush=True))
    run, job = _open_finished(run_path, trust, task)
    spec = job.spec
    with run:
        study = open_run_study(spec, run, reading=True)
        completed = [t.number for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if number not in completed:
            raise UsageError(
                f"Trial {number} is not a completed trial of run {spec.name!r}; completed: {completed}."
            )
        trial = next(t for t in study.trials if t.number == number)
        prepared = prepare(job, progress=False, task=task)
        baseline = run.read_json("baseline.json")
        settings = replace(prepared.settings, reference_latency_ms=baseline["latency_ms"])
        policy = Policy.from_dict(trial.user_attrs["policy"])
        log(f"Final fine-tune of trial {number} ({spec.final_steps} steps) ...")
        done = finalize(prepared.task, policy, spec.final_settings(settings), spec.device, trial)
        final = done.final
        final.update(score_on_test(prepared.task, done.model, settings, spec.device, done.deployed))
        folder = run.path / "exports" / f"trial-{number}"
        folder.mkdir(parents=True, exist_ok=True)
        final["export"] = export_all(
            done.model, done.plan, prepared.source, prepared.task, settings, folder, formats, done.deployed
        )
        write_atomically(folder / "policy.json", policy.to_json() + "\n")
        write_atomically(
            folder / "export.json", json.dumps({"trial": number, "final": final}, indent=1) + "\n"
        )
        failed = export_errors(final["export"])
        if failed:  # a format the user asked for and did not get
            raise PrunepilotError(
                f"Trial {number}'s export failed for {'; '.join(failed)} (the others are in {folder})."
            )
        files = [f for name in formats for f in EXPORT_FORMATS[name] if (folder / f).is_file()]
        log(
            f"Trial {number}: test {prepared.settings.metric.label} {final['test_accuracy']:.4f}, latency "
            f"{final['latency_ms']:.3f} ms; exported {', '.join(files)} to {folder}"
        )
    return folder


def repair_run(run_path: str | Path, log: Callable[[str], None] | None = None) -> int:
    """Mends a damaged study journal: the run's (``run_path`` a run directory) or a journal file
    shared by the runs of a named study (``run_path`` the file); every readable record kept, the
    damaged file kept as a backup (see :func:`~prunepilot.search.journal.repair_journal`).

    Raises:
        UsageError: when ``run_path`` is neither, or the run's study is kept in a database.
    """
    log = log or (lambda text: print(text, flush=True))
    if Path(run_path).is_file():  # a shared journal: its runs are named in the journal itself
        if not str(run_path).endswith(".journal"):
            raise UsageError(
                f"{str(run_path)!r} is neither a run directory nor a study journal (a '.journal' file)."
            )
        log(f"{run_path}: {repair_journal(run_path).describe()}.")
        return EXIT_OK
    run, job = _open_finished(run_path, imports=False)
    spec = job.spec
    location = storage_location(spec.storage, spec.out, spec.study) or str(run.file(STUDY_FILE))
    if "://" in location:
        raise UsageError(
            f"Run {spec.name!r} keeps its study in the database {location!r}; only journal files are "
            "repaired here (use the database's own tools)."
        )
    with run:
        summary = repair_journal(location)
    report = shlex.join(["prunepilot", "report", str(run.path)])
    log(
        f"{location}: {summary.describe()}. Read it with {report}; "
        f"continue it with: {resume_command_line(str(spec.name), spec.out)}"
    )
    return EXIT_OK


def _open_finished(
    run_path: str | Path, trust: bool = False, task: Task | None = None, imports: bool = True
) -> tuple[RunDir, ResolvedJob]:
    """The run and its saved job; when the caller ``imports`` what the job names, refused if the run
    was not made on this machine, unless ``trust`` (or ``task`` gives the model and data from Python)."""
    path = Path(run_path)
    if not (path / "config.json").is_file():
        raise UsageError(f"{run_path!r} is not a run directory (it has no config.json).")
    run = RunDir.open(str(path.parent), path.name, resume=True)
    config = run.read_config()
    if imports and task is None:
        check_trusted(path, named_code(config), trust)
    spec = replace(JobSpec.from_dict(config), name=path.name, out=str(path.parent))
    return run, spec.resolve()
