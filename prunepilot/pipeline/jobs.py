"""A whole job, stage by stage: prepare -> search -> finish; and its check (``prunepilot validate``)
and resumption."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from torch import nn

from prunepilot.budget import format_cost
from prunepilot.errors import EXIT_BUDGET_NOT_MET, EXIT_OK, Interrupted, StorageError, UsageError
from prunepilot.export import EXPORT_FORMATS
from prunepilot.phases import PhaseClock
from prunepilot.pipeline.finish import finish_stage
from prunepilot.pipeline.prepare import PreparedJob, measure_baseline, prepare
from prunepilot.pipeline.reach import check_reachable, dry_run_lines
from prunepilot.pipeline.revisit import export_trial
from prunepilot.pipeline.search import check_shared_study, open_run_study, resume_command, search_stage
from prunepilot.policies import Policy
from prunepilot.rundir import RunDir, default_run_name
from prunepilot.search.journal import JournalDamaged
from prunepilot.spec import JobSpec
from prunepilot.tasks import Task
from prunepilot.trust import record_trusted

__all__ = ["SearchResult", "check_job", "resume_spec", "run_job"]

#: Failures to write in the run's folder that the user can mend (then resume); ENOENT: the folder deleted.
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT}


@dataclass(frozen=True)
class SearchResult:
    """What a search job leaves.

    Attributes:
        exit_code: What ``prunepilot search`` exits with: 0 the budget was met (or a dry run),
            3 no model met it.
        run_dir: The run directory (None for a dry run).
        report: The content of ``report.json`` (None for a dry run).
        model: The chosen model, pruned and fine-tuned (on the CPU); None when none was chosen.
            Its policy is :attr:`policy`; the feasible front's trials are :attr:`front`.
        task: The model and data searched, when given from Python (:meth:`export` re-uses them).
    """

    exit_code: int
    run_dir: Path | None = None
    report: dict[str, Any] | None = None
    model: nn.Module | None = None
    task: Task | None = field(default=None, repr=False, compare=False)

    def export(
        self, trial: int, formats: Sequence[str] | None = None, log: Callable[[str], None] | None = None
    ) -> Path:
        """Re-creates trial ``trial``'s model (a point of :attr:`front`, say) with the final
        fine-tune and exports it, checked, into ``run_dir/exports/trial-N/`` (as ``prunepilot
        export RUN --trial N`` does); the chosen model's exports are already in :attr:`run_dir`.

        Args:
            trial: A completed trial's number.
            formats: Keys of :data:`~prunepilot.export.EXPORT_FORMATS`; None for all.
            log: Where progress lines go (stdout by default).

        Returns:
            The folder holding the exports.

        Raises:
            UsageError: for a dry run's result, or a trial that is not a completed one of the run.
        """
        if self.run_dir is None:
            raise UsageError("A dry run has no trials to export.")
        chosen = tuple(dict.fromkeys(formats or EXPORT_FORMATS))
        unknown = sorted(set(chosen) - set(EXPORT_FORMATS))
        if unknown:
            raise UsageError(f"Unknown export format(s) {unknown}; accepted: {sorted(EXPORT_FORMATS)}.")
        return export_trial(self.run_dir, trial, chosen, log, self.task)

    @property
    def budget_met(self) -> bool:
        """Whether the chosen model meets the budget on re-measurement."""
        return bool(self.report and self.report["budget_met"])

    @property
    def policy(self) -> Policy | None:
        """The chosen model's policy (None when none was chosen)."""
        chosen = self.report and self.report["chosen"]
        return Policy.from_dict(chosen["policy"]) if chosen else None

    @property
    def front(self) -> list[dict[str, Any]]:
        """The feasible Pareto front's trials (as in ``report.json``), cheapest first."""
        if not self.report:
            return []
        by_number = {t["number"]: t for t in self.report["trials"]}
        return [by_number[n] for n in self.report["front"]]


def run_job(
    spec: JobSpec,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    task: Task | None = None,
) -> SearchResult:
    """Runs a search job.

    Everything is validated (model, data, policy file, budget reachable) before the run directory
    is created; a resumed run is locked before anything is measured.

    Args:
        spec: The job.
        progress: Show progress bars.
        log: Where progress lines go (stdout by default).
        task: The model and data as Python objects (``prunepilot.search``); None loads what the job
            names.

    Raises:
        UsageError: on bad input.
        Interrupted: on Ctrl-C (finished trials are kept).
    """
    log = log or (lambda text: print(text, flush=True))
    clock = PhaseClock()
    job = spec.resolve()
    if not spec.resume:
        RunDir.check_root(spec.out)
    if not spec.resume and not spec.dry_run and not spec.name:  # named once the job is valid
        spec = replace(spec, name=default_run_name(spec.out))
        job = replace(job, spec=spec)
    # A resumed run's study already holds its warm starts; the policy file is not read again.
    start_policy = Policy.load(spec.policy) if spec.policy and not spec.resume else None
    if spec.dry_run:  # everything the search will trace, prune or measure before its first trial
        check_shared_study(spec)
        prepared = prepare(job, start_policy, progress, task=task, slimming=False)
        baseline = measure_baseline(prepared)
        for line in dry_run_lines(prepared, baseline):
            log(line)
        checked = check_reachable(prepared, baseline, job.budget_limit(baseline) if job.budget else None)
        log(f"Checked: {checked}.")
        return SearchResult(EXIT_OK)
    if spec.resume:
        run = RunDir.open(spec.out, str(spec.name), resume=True)
        with run:
            with clock.phase("prepare"):
                prepared = prepare(job, start_policy, progress, task=task)
            _log_slimming(prepared, log)
            baseline = run.read_json("baseline.json") if run.file("baseline.json").is_file() else None
            with _written_whole(run, spec), _interruption_told(run, spec, clock):
                if baseline is None:
                    with clock.phase("baseline"):
                        baseline = measure_baseline(prepared)
                    run.write_json("baseline.json", baseline)
                return _search_and_finish(prepared, run, baseline, start_policy, progress, log, clock)
    RunDir.check(spec.out, str(spec.name), resume=False)  # before anything slow runs
    check_shared_study(spec)
    with clock.phase("prepare"):
        prepared = prepare(job, start_policy, progress, task=task)
    _log_slimming(prepared, log)
    with clock.phase("baseline"):
        baseline = measure_baseline(prepared)
        check_reachable(prepared, baseline, job.budget_limit(baseline))
    run = RunDir.open(spec.out, str(spec.name), resume=False)
    with run, _written_whole(run, spec), _interruption_told(run, spec, clock):
        run.write_json("config.json", spec.to_dict())
        record_trusted(run.path)  # made here: reading it later imports what it names without a flag
        run.write_json("baseline.json", baseline)
        return _search_and_finish(prepared, run, baseline, start_policy, progress, log, clock)


def check_job(spec: JobSpec, log: Callable[[str], None] | None = None, task: Task | None = None) -> int:
    """Checks everything a search needs without searching: the job's fields, the policy file, the
    model and data (imports, shapes, a forward and backward pass), that the model traces for pruning,
    and that the smallest model of the space meets the budget. Writes nothing.

    Raises:
        UsageError: naming what is wrong.
    """
    log = log or (lambda text: print(text, flush=True))
    job = spec.resolve()
    start_policy = Policy.load(spec.policy) if spec.policy else None
    prepared = prepare(job, start_policy, progress=False, task=task, slimming=False)
    baseline = measure_baseline(prepared)
    limit = job.budget_limit(baseline) if job.budget is not None else None
    check_reachable(prepared, baseline, limit)  # the smallest model of the space, as the dry run makes it
    reach = f"; budget {limit.text} = {format_cost(limit.cost, limit.limit)} is reachable" if limit else ""
    log(
        f"The job is valid: task {prepared.task.name}, input {prepared.task.input_shape}, "
        f"{len(prepared.groups)} prunable groups, baseline val {prepared.settings.metric.label} "
        f"{baseline['accuracy']:.4f}, {format_cost('latency_ms', baseline['latency_ms'])}{reach}."
    )
    return EXIT_OK


def _log_slimming(prepared: PreparedJob, log: Callable[[str], None]) -> None:
    record = prepared.slimming
    if record is None:
        return
    if "note" in record:
        log(record["note"])
        return
    how = "from the cache" if record["cached"] else f"in {record['seconds']:.0f} s"
    log(f"Slimming warm-up: {record['steps']} steps (reg {record['reg']:g}) {how}; mean BatchNorm scale "
        f"{record['mean_scale_before']:.3f} -> {record['mean_scale_after']:.3f} (under 0.01: "
        f"{record['small_scale_share_after']:.0%}); validation {prepared.settings.metric.label} "
        f"{record['val_accuracy']:.4f}.")  # fmt: skip


def resume_spec(out: str, name: str | None, overrides: dict[str, Any]) -> JobSpec:
    """The saved job of run ``out/name`` (the newest run when ``name`` is None), with overrides."""
    if name is None:
        runs = sorted((p for p in Path(out).glob("*/config.json")), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise UsageError(f"--resume found no run in {out!r}; pass --name of the run to resume.")
        name = runs[-1].parent.name
    run = RunDir.open(out, name, resume=True)
    spec = JobSpec.from_dict(run.read_config())
    given = {key: value for key, value in overrides.items() if value is not None}
    return replace(spec, **given, name=name, out=out, resume=True)


@contextlib.contextmanager
def _written_whole(run: RunDir, spec: JobSpec) -> Iterator[None]:
    """Turns a failure to write in the run's folder (no space left, read-only, the folder deleted)
    into one line naming the folder and how to continue; every file is written whole or not at all
    (atomic files, the journal's whole records), so the run resumes once it can be written."""
    try:
        yield
    except OSError as exc:
        deleted = not run.path.is_dir()
        # A missing file is the run's own only when its folder went away.
        if exc.errno not in _WRITE_ERRORS or (exc.errno == errno.ENOENT and not deleted):
            raise
        what = f"{exc.strerror} ({Path(exc.filename).name})" if exc.filename else exc.strerror
        if deleted:
            raise StorageError(
                f"The run directory {str(run.path)!r} was deleted while the search ran ({what}); "
                "start a new run."
            ) from None
        saved = run.file("config.json").is_file()
        then = f"continue with: {resume_command(spec)}" if saved else "run it again."
        raise StorageError(
            f"Cannot write in {str(run.path)!r}: {what}; what finished is saved - make room (or make it "
            f"writable), then {then}"
        ) from None


@contextlib.contextmanager
def _interruption_told(run: RunDir, spec: JobSpec, clock: PhaseClock) -> Iterator[None]:
    """A Ctrl-C once the run's folder exists (in the calibration, the final fine-tune, the export)
    says which phase it stopped, what is saved, and the command that continues the run."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted in the {clock.last or 'prepare'} phase; {_saved_trials(run, spec)} saved in "
            f"{run.path} - continue with: {resume_command(spec)}"
        ) from None


def _saved_trials(run: RunDir, spec: JobSpec) -> str:
    """How many of the run's trials are complete in its study, as a message says it."""
    try:
        study = open_run_study(spec, run, reading=True)
    except JournalDamaged:
        return "the trials completed so far are"
    except UsageError:  # no study yet
        return "no trial is"
    except Exception:  # noqa: BLE001 - a study that cannot be read now: say what is sure
        return "the trials completed so far are"
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return "1 complete trial is" if len(complete) == 1 else f"{len(complete)} complete trials are"


def _search_and_finish(
    prepared: PreparedJob,
    run: RunDir,
    baseline: dict[str, Any],
    start_policy: Policy | None,
    progress: bool,
    log: Callable[[str], None],
    clock: PhaseClock,
) -> SearchResult:
    budget = prepared.job.budget_limit(baseline)
    outcome = search_stage(prepared, run, baseline, budget, start_policy, progress, log, clock)
    report, done = finish_stage(prepared, run, baseline, budget, outcome, log, clock)
    code = EXIT_OK if report["budget_met"] else EXIT_BUDGET_NOT_MET
    # The report as written (plain JSON types), so that it equals what a reader of the file sees.
    chosen = done.model if done else None
    return SearchResult(code, run.path, run.read_json("report.json"), chosen, prepared.task)
