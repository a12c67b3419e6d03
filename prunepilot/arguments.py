"""The ``prunepilot`` command line's flags (the parser); :mod:`prunepilot.cli` runs the commands."""

from __future__ import annotations

import argparse

from prunepilot._version import __version__
from prunepilot.errors import ECHO_LIMIT, EXIT_USAGE, PrunepilotError, cut
from prunepilot.settings import settings_of
from prunepilot.settings.flags import add_flags
from prunepilot.spec import SECTIONS, JobSpec

EPILOG = """exit codes: 0 budget met, 2 bad input, 3 no trial met the budget (report written),
130 interrupted (continue with --resume), 1 internal error"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit code 2 (through PrunepilotError)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = " ".join(self.prog.split()[1:2])  # "" for prunepilot itself
        help_command = " ".join(["prunepilot", command]).strip()
        raise _ArgumentError(f"{cut(message, 2 * ECHO_LIMIT)} (see '{help_command} --help')")


class _ArgumentError(PrunepilotError):
    exit_code = EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="prunepilot", description="Automated pruning-policy search.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"prunepilot {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    search = commands.add_parser(
        "search",
        help="search pruning policies and export the best model within a budget",
        description="Search per-group pruning policies; export the best model within the budget.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # only flags given override the job file
    )
    search.add_argument("job", nargs="?", help="a TOML job file (flags given override it)")
    add_flags(search, settings_of(JobSpec), SECTIONS)
    validate = commands.add_parser(
        "validate",
        help="check a job file in seconds: keys, imports, shapes, tracing, budget reachable",
        description="Check a job file without searching: every key, the model and data imports, "
        "shapes, that the model traces for pruning, and that the budget can be reached at all.",
        epilog=EPILOG,
        argument_default=argparse.SUPPRESS,
    )
    validate.add_argument("job", help="the TOML job file")
    validate.add_argument("--budget", help="override the job file's budget")
    report = commands.add_parser(
        "report",
        help="re-create a run's report files (json, md, html, plot) from its study",
        description="Re-create report.json, report.md, report.html and pareto.png of a run from its "
        "study; nothing is retrained.",
        epilog=EPILOG,
    )
    report.add_argument("run", help="the run directory, e.g. runs/search-20261123-154501")
    export = commands.add_parser(
        "export",
        help="re-create a trial's model and export it (TorchScript, ONNX, plan)",
        description="Re-create trial N's model (its policy on a fresh copy of the base model, then the "
        "final fine-tune) and export it into RUN/exports/trial-N/, each export checked against the model.",
        epilog=EPILOG,
    )
    export.add_argument("run", help="the run directory")
    export.add_argument("--trial", type=int, required=True, help="the trial number (see report.json)")
    export.add_argument(
        "--format",
        action="append",
        choices=["torchscript", "onnx", "plan", "int8"],
        help="export format; repeat for several (default: all; int8, model.int8.onnx, for an int8 trial)",
    )
    repair = commands.add_parser(
        "repair",
        help="mend a run's damaged study journal, keeping every readable record",
        description="Mend a run's study journal that a crash or a full disk damaged: every readable "
        "record is kept, a record written onto a torn one is salvaged, trials whose records were lost "
        "are left to run again on --resume; the damaged file is kept as study.journal.bak.",
        epilog=EPILOG,
    )
    repair.add_argument("run", help="the run directory (or a journal shared by a --study's runs)")
    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of job files (for editors that complete and check TOML)",
        description="Print the JSON Schema of prunepilot job files. Save it, then point the job file at it "
        "with a first line '#:schema ./job.schema.json' (Taplo, VS Code's Even Better TOML).",
        epilog=EPILOG,
    )
    trust = "import and run the code a run made elsewhere names (its --model, --data, --metric, --loss)"
    for sub in (search, report, export):
        sub.add_argument("--trust-run", action="store_true", default=False, help=trust)
    for sub in (search, validate, report, export, repair, schema):
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
        sub.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser
