"""Job files: a TOML file that holds everything the flags hold, for jobs kept under version control.

Every key has one place (:data:`KEYS`); flags given on the command line override the file. An
error names the file, the key's path (``space.ratio_max``) and what is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from prunepilot.errors import UsageError
from prunepilot.families import FAMILY_KEYS


@dataclass(frozen=True)
class Key:
    """One key of a job file.

    Attributes:
        path: Dotted path in the file (``space.ratio_max``; top-level keys have no dot).
        field: The :class:`JobSpec` field it sets.
        kind: The TOML type accepted: ``str``, ``int``, ``float`` (ints accepted), ``bool``,
            ``int_list`` or ``str_list``.
        help: One line for the documentation.
    """

    path: str
    field: str
    kind: str
    help: str


KEYS = (
    Key("budget", "budget", "str", "what the model must fit: 30ms, 2x, 50%, 120MFLOPs, 300k params, 2MB"),
    Key("trials", "trials", "int", "trials to finish in the run"),
    Key("timeout", "timeout", "float", "seconds after which no new trial starts"),
    Key("seed", "seed", "int", "seeds the sampler, the data order and the random criterion"),
    Key("name", "name", "str", "run name (folder under out)"),
    Key("out", "out", "str", "folder of run directories"),
    Key("policy", "policy", "str", "a policy JSON file evaluated first"),
    Key("study", "study", "str", "a study shared by runs night after night"),
    Key("storage", "storage", "str", "Optuna storage URL of the study, or a journal file path"),
    Key("model.task", "task", "str", "built-in task when no factory is given: digits or mnist"),
    Key("model.factory", "model", "str", "pkg.module:factory returning the torch.nn.Module"),
    Key("model.checkpoint", "weights", "str", "state dict loaded with weights_only=True"),
    Key("model.input_shape", "input_shape", "int_list", "one sample's shape, checked against the data"),
    Key("model.input_dtype", "input_dtype", "str", "one sample's dtype (float32, int64 ...), checked"),
    Key("model.device", "device", "str", "the target device: cpu, cuda or cuda:N"),
    Key("data.factory", "data", "str", "pkg.module:factory returning (train, val, test) data"),
    Key("metric.function", "metric", "str", "pkg.module:callable (outputs, labels) -> float"),
    Key("metric.direction", "metric_direction", "str", "maximize or minimize"),
    Key("model.output_key", "output_key", "str", "key or attribute of the class scores in the output"),
    Key("data.input_key", "input_key", "str", "key of the model's input in dict batches"),
    Key("data.label_key", "label_key", "str", "key of the labels in dict batches"),
    Key("finetune.loss", "loss", "str", "pkg.module:callable (model, batch) -> loss tensor"),
    Key("deploy.runtime", "runtime", "str", "where latency and scores are measured: torch or onnxruntime"),
    Key("deploy.quantize", "quantize", "str", "int8 by ONNX Runtime: none, int8, or search (per policy)"),
    Key("latency.batch_size", "latency_batch", "int", "samples per timed forward pass"),
    Key("latency.threads", "threads", "int", "torch threads while timing"),
    Key("latency.repeats", "latency_repeats", "int", "timed passes per measurement"),
    Key("space.ratio_min", "ratio_min", "float", "smallest pruning ratio of a group"),
    Key("space.ratio_max", "ratio_max", "float", "largest pruning ratio of a group (at most 0.95)"),
    Key("space.exclude", "exclude", "str_list", "groups and blocks left alone: names or patterns (layer3.*)"),
    Key("space.criteria", "criteria", "str_list", "criteria the search may choose from"),
    Key("space.block_removal", "block_removal", "bool", "let the search remove whole residual blocks"),
    Key("space.round_to", "round_to", "int", "kept channels rounded up to a multiple of this"),
    Key("space.round_to_choices", "round_to_choices", "int_list", "roundings the search chooses from"),
    Key("finetune.steps", "finetune_steps", "int", "fine-tune steps per trial"),
    Key("finetune.final_steps", "final_steps", "int", "fine-tune steps of the chosen model"),
    Key("finetune.promotion_share", "promotion_share", "float",
        "whole trade-off: share of trial time giving the cheapest front points the final fine-tune"),
    Key("finetune.lr", "lr", "float", "peak learning rate (AdamW, cosine decay)"),
    Key("finetune.batch_size", "batch_size", "int", "fine-tune and recalibration batch size"),
    Key("finetune.bn_batches", "bn_batches", "int", "batches for BatchNorm recalibration"),
    Key("discovery.timeout", "discovery_timeout", "float", "seconds each discovery step may take"),
    Key("discovery.memory_gb", "discovery_memory_gb", "float", "GiB each discovery step may add"),
    Key("screen.enabled", "screen", "bool", "predict each policy's budget metric and skip those over budget"),
    Key("screen.fill", "fill", "bool", "lower or raise a sampled policy's ratios until just under budget"),
    Key("screen.calibration_samples", "calibration_samples", "int", "pruned models timed for the predictor"),
    Key("ray.workers", "workers", "int", "trials in flight; 0 runs them in this process"),
    Key("ray.address", "ray_address", "str", "a Ray cluster to join"),
    Key("ray.cpus_per_trial", "cpus_per_trial", "float", "CPUs a trial reserves"),
    Key("ray.gpus_per_trial", "gpus_per_trial", "float", "GPUs a trial reserves"),
    Key("ray.max_retries", "max_retries", "int", "re-runs of a trial whose worker died"),
    Key("ray.latency_gate", "latency_gate", "bool", "pause a node's other trials while one is timed"),
    *(Key(*key) for key in FAMILY_KEYS),
)
_BY_PATH = {key.path: key for key in KEYS}
_PATH_OF = {key.field: key.path for key in KEYS}
_SECTIONS = sorted({key.path.split(".")[0] for key in KEYS if "." in key.path})
_KIND_TEXT = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "int_list": "a list of integers",
    "str_list": "a list of strings",
}


@dataclass(frozen=True)
class JobFile:
    """A parsed job file: JobSpec field values, and where each came from.

    Attributes:
        path: The file.
        values: JobSpec field -> value.
        origin: JobSpec field -> key path in the file (for error messages).
    """

    path: str
    values: dict[str, Any]
    origin: dict[str, str]

    def error(self, field: str, reason: str) -> UsageError:
        """The standard error for ``field``: file, key path, reason."""
        return UsageError(
            f"{self.path}: {self.origin.get(field, _PATH_OF.get(field, field))}: {reason}", field
        )

    def blames(self, field: str | None) -> bool:
        """Whether an error about ``field`` is the file's (it set the field, or lacks a required one)."""
        return field in self.origin or field == "budget"


def load_job_file(path: str | Path) -> JobFile:
    """Reads and type-checks a job file.

    Raises:
        UsageError: naming the file, the key path and what is accepted.
    """
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark is allowed
    except OSError as exc:
        raise UsageError(f"Cannot read the job file {shown!r}: {exc.strerror}.") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{shown}: not a TOML job file (not UTF-8 text: byte {exc.start}).") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{shown}: not valid TOML ({exc}).") from None
    except RecursionError:
        raise UsageError(f"{shown}: not a TOML job file (nested too deeply to read).") from None
    values, origin = {}, {}
    for dotted, value in _flatten(data, shown):
        key = _BY_PATH.get(dotted)
        if key is None:
            section = dotted.split(".")[0]
            if "." in dotted and section in _SECTIONS:
                accepted = [k.path for k in KEYS if k.path.startswith(section + ".")]
            else:
                accepted = [k.path for k in KEYS if "." not in k.path] + [f"[{s}]" for s in _SECTIONS]
            raise UsageError(f"{shown}: {dotted}: unknown key; accepted: {', '.join(accepted)}.")
        values[key.field] = _checked(key, value, shown)
        origin[key.field] = dotted
    return JobFile(shown, values, origin)


def _flatten(data: dict[str, Any], shown: str, prefix: str = ""):
    for name, value in data.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict):
            if prefix:
                raise UsageError(f"{shown}: {dotted}: tables nest one level only ([section] then keys).")
            if name not in _SECTIONS:
                raise UsageError(
                    f"{shown}: [{name}]: unknown section; accepted: {', '.join(f'[{s}]' for s in _SECTIONS)}."
                )
            yield from _flatten(value, shown, dotted + ".")
        else:
            yield dotted, value


def _checked(key: Key, value: Any, shown: str) -> Any:
    kind = key.kind
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "int_list": isinstance(value, list)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
        "str_list": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[kind]
    if not ok:
        raise UsageError(f"{shown}: {key.path}: must be {_KIND_TEXT[kind]}. Got {value!r} instead.")
    if kind == "float":
        return float(value)
    if key.field == "input_shape":
        return tuple(value)
    return value
