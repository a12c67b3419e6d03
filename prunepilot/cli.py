"""The ``prunepilot`` command line.

Exit codes: 0 the budget was met (or nothing to search), 1 an unexpected internal error,
2 bad input, 3 no trial met the budget (the report is still written), 130 interrupted
(continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from prunepilot import __version__
from prunepilot.budget import ACCEPTED_FORMS
from prunepilot.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, Interrupted, PrunepilotError
from prunepilot.policies import criterion_names
from prunepilot.tasks.builtin import BUILTIN_TASKS, DEFAULT_TASK

EPILOG = """exit codes: 0 budget met, 2 bad input, 3 no trial met the budget (report written),
130 interrupted (continue with --resume), 1 internal error"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit code 2 (through PrunepilotError)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgumentError(f"{message} (see 'prunepilot {self.prog.split()[-1]} --help')")


class _ArgumentError(PrunepilotError):
    exit_code = EXIT_USAGE


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    return value


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


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
    )
    search.add_argument("--budget", help="what the model must fit: " + ACCEPTED_FORMS.replace("%", "%%"))
    search.add_argument("--trials", type=int, default=None, help="trials to finish (default 24)")
    search.add_argument(
        "--timeout", type=_positive_float, default=None, help="seconds after which no new trial starts"
    )
    search.add_argument("--name", help="run name (default: search-<timestamp>)")
    search.add_argument("--out", default="runs", help="folder of run directories (default: runs)")
    search.add_argument(
        "--resume", action="store_true", help="continue the run --name (default: the newest run in --out)"
    )
    search.add_argument(
        "--dry-run", action="store_true", help="print groups, baseline and search space; run no trial"
    )
    task = search.add_argument_group("model and data (default: the built-in digits task)")
    task.add_argument(
        "--task",
        choices=sorted(BUILTIN_TASKS),
        default=DEFAULT_TASK,
        help="built-in task when no --model is given: "
        + "; ".join(f"{t.name}: {t.description}" for t in BUILTIN_TASKS.values()),
    )
    task.add_argument("--model", help="pkg.module:factory returning a torch.nn.Module")
    task.add_argument("--weights", help="checkpoint (state dict), loaded with weights_only=True")
    task.add_argument("--data", help="pkg.module:factory returning (train, val, test) datasets")
    task.add_argument("--input-shape", help="one sample's shape, e.g. 3,32,32 (checked against the data)")
    tuning = search.add_argument_group("search and trials")
    tuning.add_argument("--policy", help="a policy JSON file to evaluate first (warm start)")
    tuning.add_argument("--seed", type=int, default=0)
    tuning.add_argument("--finetune-steps", type=int, default=60, help="fine-tune steps per trial")
    tuning.add_argument("--final-steps", type=int, default=600, help="fine-tune steps of the chosen model")
    tuning.add_argument("--lr", type=float, default=1e-3)
    tuning.add_argument("--batch-size", type=int, default=64)
    tuning.add_argument("--bn-batches", type=int, default=8, help="batches for BatchNorm recalibration")
    tuning.add_argument(
        "--ratio-max", type=float, default=0.8, help="largest pruning ratio per group (at most 0.95)"
    )
    tuning.add_argument(
        "--round-to", type=int, default=1, help="round kept channels up to a multiple of this"
    )
    tuning.add_argument(
        "--round-to-choices",
        type=_int_list,
        default=None,
        help="let the search choose the rounding per policy, e.g. 1,8,16 (overrides --round-to)",
    )
    tuning.add_argument("--criteria", help=f"comma-separated subset of {','.join(criterion_names())}")
    tuning.add_argument(
        "--no-screen",
        dest="screen",
        action="store_false",
        help="train every sampled policy, even those predicted over budget (no budget-aware sampling)",
    )
    tuning.add_argument(
        "--calibration-samples",
        type=int,
        default=32,
        help="policies measured to calibrate the latency predictor that screens a latency budget "
        "(default 32; 0: no latency screen)",
    )
    latency = search.add_argument_group("latency measurement")
    latency.add_argument(
        "--latency-batch",
        type=int,
        default=None,
        help="batch size (default: 64 for the built-in task, 1 otherwise)",
    )
    latency.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    latency.add_argument(
        "--latency-repeats", type=int, default=30, help="timed passes per measurement; the median is kept"
    )
    where = search.add_argument_group("where trials run (Ray)")
    where.add_argument(
        "--workers",
        type=int,
        default=None,
        help="trials in flight (default: sized to the Ray cluster); 0 runs them one at a "
        "time in this process, without Ray",
    )
    where.add_argument(
        "--ray-address",
        default=None,
        help="join this Ray cluster (default: RAY_ADDRESS, else a local instance)",
    )
    where.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs a trial reserves (default 1)")
    where.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0.0,
        help="GPUs a trial reserves (default 0); a trial given a GPU runs on CUDA",
    )
    where.add_argument(
        "--max-retries", type=int, default=2, help="re-runs of a trial whose worker or node died (default 2)"
    )
    where.add_argument(
        "--no-latency-gate",
        dest="latency_gate",
        action="store_false",
        help="let latency measurements overlap other trials' compute on the node "
        "(more trials per minute, noisier latency)",
    )
    for sub in (search,):
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
        sub.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _search(args: argparse.Namespace) -> int:
    from prunepilot.runner import resume_spec, run_job
    from prunepilot.spec import JobSpec
    from prunepilot.tasks.loading import parse_input_shape

    if args.resume:
        defaults = vars(build_parser().parse_args(["search"]))
        where = ("workers", "ray_address", "cpus_per_trial", "gpus_per_trial", "max_retries", "latency_gate")
        kept = {"command", "resume", "name", "out", "trials", "timeout", "quiet", "debug", *where}
        ignored = sorted(k for k, v in vars(args).items() if k not in kept and v != defaults[k])
        if ignored:
            flags = ", ".join("--" + k.replace("_", "-") for k in ignored)
            print(
                f"prunepilot: warning: {flags} ignored with --resume: the run's saved job is used "
                "(only --trials, --timeout and where trials run can change).",
                file=sys.stderr,
            )
        overrides = {"trials": args.trials, "timeout": args.timeout}
        overrides.update({k: getattr(args, k) for k in where if getattr(args, k) != defaults[k]})
        spec = resume_spec(args.out, args.name, overrides)
    else:
        spec = JobSpec(
            budget=args.budget,
            trials=24 if args.trials is None else args.trials,
            timeout=args.timeout,
            name=args.name,
            out=args.out,
            task=args.task,
            model=args.model,
            weights=args.weights,
            data=args.data,
            input_shape=parse_input_shape(args.input_shape) if args.input_shape else None,
            policy=args.policy,
            seed=args.seed,
            finetune_steps=args.finetune_steps,
            final_steps=args.final_steps,
            lr=args.lr,
            batch_size=args.batch_size,
            bn_batches=args.bn_batches,
            latency_batch=args.latency_batch,
            threads=args.threads,
            latency_repeats=args.latency_repeats,
            ratio_max=args.ratio_max,
            round_to=args.round_to,
            round_to_choices=args.round_to_choices,
            criteria=[c.strip() for c in args.criteria.split(",")] if args.criteria else None,
            screen=args.screen,
            calibration_samples=args.calibration_samples,
            dry_run=args.dry_run,
            workers=args.workers,
            ray_address=args.ray_address,
            cpus_per_trial=args.cpus_per_trial,
            gpus_per_trial=args.gpus_per_trial,
            max_retries=args.max_retries,
            latency_gate=args.latency_gate,
        )
    return run_job(spec, progress=not args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return EXIT_USAGE
        return _search(args)
    except Interrupted as exc:
        print(f"prunepilot: {exc}", file=sys.stderr)
        return exc.exit_code
    except PrunepilotError as exc:
        if debug:
            traceback.print_exc()
        print(f"prunepilot: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("prunepilot: interrupted before the search started; nothing was saved.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - last resort: one line, traceback with --debug
        if debug:
            traceback.print_exc()
        print(
            f"prunepilot: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
