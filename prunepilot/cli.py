"""The ``prunepilot`` command line.

Exit codes: 0 the budget was met (or nothing to search), 1 an unexpected internal error,
2 bad input, 3 no trial met the budget (the report is still written), 130 interrupted
(continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

from prunepilot.arguments import build_parser
from prunepilot.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Interrupted,
    PrunepilotError,
    cut,
)
from prunepilot.settings import command_line, settings_of
from prunepilot.settings.flags import given_settings
from prunepilot.spec import RESUMABLE, JobSpec

#: Characters of one error line printed (its values are cut shorter where they are echoed).
LINE_LIMIT = 2000


def _given(args: argparse.Namespace) -> dict:
    """JobSpec fields set by the flags actually given (parsed into JobSpec's types)."""
    return given_settings(args, settings_of(JobSpec))


@contextlib.contextmanager
def _blamed_on(job, given: dict) -> Iterator[None]:
    """Re-words bad input caused by a job file's key as ``file: key.path: reason``."""
    from prunepilot.errors import UsageError

    try:
        yield
    except UsageError as exc:
        field = exc.field
        if job is not None and job.blames(field) and field not in given:
            raise job.error(field, str(exc)) from None
        raise


def _reworded(error, job, given: dict):
    try:
        with _blamed_on(job, given):
            raise error
    except Exception as reworded:  # noqa: BLE001 - the same error, re-worded or as it was
        return reworded


def _job(args: argparse.Namespace):
    """The job file named on the command line (parsed), or None, and the flags given."""
    from prunepilot.settings.jobfile import load_job_file

    path = getattr(args, "job", None)
    return (load_job_file(path, settings_of(JobSpec)) if path else None), _given(args)


def _search(args: argparse.Namespace) -> int:
    from prunepilot.api import run
    from prunepilot.errors import UsageError
    from prunepilot.pipeline import resume_spec
    from prunepilot.trust import check_trusted, named_code

    job, given = _job(args)
    if given.get("resume"):
        if job is not None:
            raise UsageError("--resume continues a run with its saved job; give no job file.")
        overrides = {k: given[k] for k in RESUMABLE if k in given}
        spec = resume_spec(given.get("out", "runs"), given.get("name"), overrides)
        check_trusted(Path(spec.out) / str(spec.name), named_code(spec.to_dict()), args.trust_run)
        ignored = sorted(k for k in given if k not in {"resume", "name", "out", *RESUMABLE})
        if ignored:  # said once the run is known to exist
            flag_of = {s.name: s.flag for s in settings_of(JobSpec)}
            flags = ", ".join(flag_of[k] for k in ignored)
            print(
                f"prunepilot: warning: {flags} ignored with --resume: the run's saved job is used "
                "(only --trials, --timeout and where trials run can change).",
                file=sys.stderr,
            )
        return run(spec, progress=not getattr(args, "quiet", False)).exit_code
    with _blamed_on(job, given):
        spec = JobSpec(**{**(job.values if job else {}), **given})
        return run(spec, progress=not getattr(args, "quiet", False)).exit_code


def _validate(args: argparse.Namespace) -> int:
    from prunepilot.errors import UsageErrors
    from prunepilot.pipeline import check_job

    job, given = _job(args)
    spec = JobSpec(**{**job.values, **given})
    problems = spec.problems()
    if problems:  # every wrong field at once, one line each
        raise UsageErrors([_reworded(problem, job, given) for problem in problems])
    with _blamed_on(job, given):
        return check_job(spec)


def _report(args: argparse.Namespace) -> int:
    from prunepilot.pipeline import rebuild_report

    return rebuild_report(args.run, trust=args.trust_run)


def _export(args: argparse.Namespace) -> int:
    from prunepilot.export import EXPORT_FORMATS
    from prunepilot.pipeline import export_trial

    formats = tuple(dict.fromkeys(args.format or EXPORT_FORMATS))
    export_trial(args.run, args.trial, formats, trust=args.trust_run)
    return EXIT_OK


def _repair(args: argparse.Namespace) -> int:
    from prunepilot.pipeline import repair_run

    return repair_run(args.run)


def _schema(args: argparse.Namespace) -> int:
    from prunepilot.write_docs import schema_text

    print(schema_text(), end="")
    return EXIT_OK


_COMMANDS = {
    "search": _search,
    "validate": _validate,
    "report": _report,
    "export": _export,
    "repair": _repair,
    "schema": _schema,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code. SIGTERM (a scheduler's stop) is taken as
    Ctrl-C: what is saved and how to continue are said, and nothing is left locked."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with command_line(), _terminate_as_interrupt():  # messages name settings by their flags
        return _main(argv)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str]) -> int:
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return EXIT_USAGE
        return _COMMANDS[args.command](args)
    except Interrupted as exc:
        print(f"prunepilot: {exc}", file=sys.stderr)
        return exc.exit_code
    except PrunepilotError as exc:
        if debug:
            traceback.print_exc()
        for line in getattr(exc, "lines", [str(exc)]):
            print(f"prunepilot: error: {cut(line, LINE_LIMIT)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("prunepilot: interrupted before the search started; nothing was saved.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - last resort: one line, traceback with --debug
        if debug:
            traceback.print_exc()
        print(
            f"prunepilot: internal error: {type(exc).__name__}: {cut(str(exc), LINE_LIMIT)} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
