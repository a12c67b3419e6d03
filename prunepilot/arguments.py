"""The ``prunepilot`` command line's flags (the parser); :mod:`prunepilot.cli` runs the commands."""

from __future__ import annotations

import argparse

from prunepilot._version import __version__
from prunepilot.budget import ACCEPTED_FORMS
from prunepilot.errors import EXIT_USAGE, PrunepilotError
from prunepilot.families import add_family_arguments
from prunepilot.policies import MAX_RATIO, criterion_names
from prunepilot.spec import JobSpec
from prunepilot.tasks.builtin import BUILTIN_TASKS

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


def _default(name: str) -> str:
    """``JobSpec``'s default for the field ``name``, as help text shows it."""
    return f"default {getattr(JobSpec, name)}"


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
    search.add_argument(
        "--budget",
        help="what the model must fit: "
        + ACCEPTED_FORMS.replace("%", "%%")
        + "; one the baseline already meets ('100%%') maps the whole trade-off. Latency is measured in "
        "--runtime; a size counts int8 weights as stored; FLOPs are the same in int8 and fp32",
    )
    search.add_argument("--trials", type=int, help=f"trials to finish ({_default('trials')})")
    search.add_argument("--timeout", type=_positive_float, help="seconds after which no new trial starts")
    search.add_argument("--name", help="run name (default: search-<timestamp>)")
    search.add_argument("--out", help=f"folder of run directories ({_default('out')})")
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
        help=f"built-in task when no --model is given ({_default('task')}): "
        + "; ".join(f"{t.name}: {t.description}" for t in BUILTIN_TASKS.values()),
    )
    task.add_argument("--model", help="pkg.module:factory returning a torch.nn.Module")
    task.add_argument("--weights", help="checkpoint (state dict), loaded with weights_only=True")
    task.add_argument("--data", help="pkg.module:factory returning (train, val, test) Datasets or loaders")
    task.add_argument("--input-shape", help="one sample's shape, e.g. 3,32,32 (checked against the data)")
    task.add_argument(
        "--input-dtype", help="one sample's dtype, e.g. float32 or int64 (default: the data's; checked)"
    )
    task.add_argument(
        "--metric",
        help="pkg.module:callable scoring (outputs, labels) -> float over a split (default: top-1 accuracy)",
    )
    task.add_argument(
        "--metric-direction",
        choices=["maximize", "minimize"],
        help=f"the metric's direction ({_default('metric_direction')})",
    )
    task.add_argument(
        "--loss", help="pkg.module:callable (model, batch) -> loss tensor that trials train on (default: "
        "cross-entropy of the class scores and the labels)",
    )  # fmt: skip
    task.add_argument("--input-key", help="the key of the model's input in dict batches (default: "
                      "input_ids, pixel_values, input ... whichever the batch has)")  # fmt: skip
    task.add_argument("--label-key", help="the labels' key in dict batches (default: labels, label ...)")
    task.add_argument(
        "--output-key",
        help="the key or attribute of the class scores in the model's output "
        "(default: a tensor, logits of a dict or ModelOutput, a tuple's first)",
    )
    task.add_argument(
        "--device",
        help="the target device, where latency is measured and the final model is made: cpu, cuda or cuda:N "
        f"({_default('device')})",
    )
    deploy = search.add_argument_group("where the model will run")
    deploy.add_argument(
        "--runtime",
        choices=["torch", "onnxruntime"],
        help="where every latency and score of the run is measured: PyTorch eager, or the model exported "
        "to ONNX and run in ONNX Runtime on the CPU (default: torch; onnxruntime with --quantize)",
    )
    deploy.add_argument(
        "--quantize",
        choices=["none", "int8", "search"],
        help="int8 quantization by ONNX Runtime (static with per-channel weights; dynamic for Linear-heavy "
        "models) after each policy's fine-tune: none, int8 (every policy), search (the search chooses "
        f"per policy; a model that cannot be quantized runs fp32) ({_default('quantize')})",
    )
    tuning = search.add_argument_group("search and trials")
    tuning.add_argument("--policy", help="a policy JSON file to evaluate first (warm start)")
    tuning.add_argument(
        "--study",
        help="a study shared by runs (nightly): trials accumulate in it, and a new run starts from "
        "the front of the earlier ones",
    )
    tuning.add_argument(
        "--storage",
        help="Optuna storage URL of the study, e.g. sqlite:///studies.db or postgresql://... "
        "(default: the run's journal; with --study, <out>/studies.journal)",
    )
    tuning.add_argument(
        "--seed",
        type=int,
        help=f"seeds the sampler, the data order and the random criterion ({_default('seed')})",
    )
    tuning.add_argument(
        "--finetune-steps", type=int, help=f"fine-tune steps per trial ({_default('finetune_steps')})"
    )
    tuning.add_argument(
        "--final-steps", type=int, help=f"fine-tune steps of the chosen model ({_default('final_steps')})"
    )
    tuning.add_argument(
        "--promotion-share",
        type=float,
        help="with a budget the baseline meets (the whole trade-off): the front's cheapest points get "
        "the final fine-tune, within this share of the trials' worker time "
        f"({_default('promotion_share')}; 0: none)",
    )
    tuning.add_argument("--lr", type=float, help=f"peak fine-tune learning rate ({_default('lr')})")
    tuning.add_argument("--batch-size", type=int, help=f"fine-tune batch size ({_default('batch_size')})")
    tuning.add_argument(
        "--bn-batches", type=int, help=f"batches for BatchNorm recalibration ({_default('bn_batches')})"
    )
    tuning.add_argument(
        "--ratio-max",
        type=float,
        help=f"largest pruning ratio per group ({_default('ratio_max')}, at most {MAX_RATIO})",
    )
    tuning.add_argument(
        "--ratio-min", type=float, help=f"smallest pruning ratio per group ({_default('ratio_min')})"
    )
    tuning.add_argument(
        "--exclude",
        help="comma-separated groups and blocks to leave alone: names or patterns such as 'layer3.*'",
    )
    tuning.add_argument(
        "--no-block-removal",
        dest="block_removal",
        action="store_false",
        help="prune channels only (default: the search may also remove whole residual blocks, "
        "those with an identity shortcut)",
    )
    tuning.add_argument(
        "--round-to", type=int, help=f"round kept channels up to a multiple of this ({_default('round_to')})"
    )
    tuning.add_argument(
        "--round-to-choices",
        type=_int_list,
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
        "--no-fill",
        dest="fill",
        action="store_false",
        help="train sampled policies as sampled, even those well under budget, and reject those over "
        "it (default: ratios lowered or raised until the policy lands just under the budget)",
    )
    tuning.add_argument(
        "--calibration-samples",
        type=int,
        help="policies measured to calibrate the latency predictor that screens a latency budget "
        f"({_default('calibration_samples')}; 0: no latency screen)",
    )
    tuning.add_argument(
        "--discovery-timeout",
        type=_positive_float,
        help=f"seconds each discovery step may take ({_default('discovery_timeout')})",
    )
    tuning.add_argument(
        "--discovery-memory-gb",
        type=_positive_float,
        help="GiB each discovery step may add (default: half the machine's memory)",
    )
    latency = search.add_argument_group("latency measurement")
    latency.add_argument(
        "--latency-batch",
        type=int,
        help="batch size (default: 64 for the built-in task, 1 otherwise)",
    )
    latency.add_argument("--threads", type=int, help=f"torch threads ({_default('threads')})")
    latency.add_argument(
        "--latency-repeats",
        type=int,
        help=f"timed passes per measurement; the median is kept ({_default('latency_repeats')})",
    )
    add_family_arguments(search, _default)
    where = search.add_argument_group("where trials run (Ray)")
    where.add_argument(
        "--workers",
        type=int,
        help="trials in flight (default: sized to the Ray cluster); 0 runs them one at a "
        "time in this process, without Ray",
    )
    where.add_argument(
        "--ray-address",
        help="join this Ray cluster (default: RAY_ADDRESS, else a local instance)",
    )
    where.add_argument(
        "--cpus-per-trial", type=float, help=f"CPUs a trial reserves ({_default('cpus_per_trial')})"
    )
    where.add_argument(
        "--gpus-per-trial",
        type=float,
        help=f"GPUs a trial reserves ({_default('gpus_per_trial')}; needs --device cuda); "
        "a trial given a GPU runs on CUDA",
    )
    where.add_argument(
        "--max-retries",
        type=int,
        help=f"re-runs of a trial whose worker or node died ({_default('max_retries')})",
    )
    where.add_argument(
        "--no-latency-gate",
        dest="latency_gate",
        action="store_false",
        help="let latency measurements overlap other trials' compute on the node "
        "(more trials per minute, noisier latency)",
    )
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
    for sub in (search, validate, report, export, repair):
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
        sub.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser
