"""Architecture zoo: 32 small models, each dry-run and searched end to end with exports checked.

Every architecture is built from a ``transformers`` config at a small size (nothing downloaded): the
models of ``tests/hf_models.py`` and the others below, CNNs, ViT-style and windowed (Swin-style)
attention models and text encoders, reading 1x32x32 digits or 32 token ids; or from torch, in the
layouts of timm and torchvision (which cannot be imported here) and for jobs beyond one input and
class scores (``OWN``: a U-Net and detectors (one tensor, or a dict of per-scale scores) with their
own loss and metric, a padded-text BERT
with its attention mask, an image-and-table model). Each runs in its own
process, under a wall-clock limit and a memory bound (the process is killed when its resident memory
passes it): a ``dry_run=True`` search (groups, removable blocks, groups left whole), then a 2-trial
search for 80% of the baseline's FLOPs whose exports (TorchScript, ONNX, plan) must match the model.
A model prunepilot refuses ends with its one-line reason; a crash, a hang or a memory blow-up ends
only that architecture's row. Printed: the table (architecture, groups, blocks, time, peak memory,
result), written to ``benchmarks/results/zoo.json`` and ``zoo.md``.

    .venv/bin/python benchmarks/zoo.py [--only NAME[,NAME]] [--timeout 600] [--memory-gb 4]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import transformers as hf  # noqa: E402
from results_file import finish  # noqa: E402

import prunepilot  # noqa: E402
from prunepilot.budget import parse_budget  # noqa: E402
from tests import hf_models, zoo  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: Largest difference between the final model and each export (the tests' tolerances).
TOLERANCE = {"torchscript_max_abs_diff": 1e-4, "onnx_max_abs_diff": 1e-4, "plan_max_abs_diff": 1e-5}
#: The search's settings: 2 trials, few steps (what is measured is that it runs, not accuracy).
QUICK = dict(
    trials=2, finetune_steps=5, final_steps=10, bn_batches=2, latency_repeats=5, workers=0,
    calibration_samples=0, progress=False,
)  # fmt: skip
#: Marks the child's one result line on its stdout.
MARK = "ZOO-ROW "

_VISION = dict(num_channels=1, num_labels=10)
_TEXT = dict(
    vocab_size=hf_models.VOCAB,
    max_position_embeddings=hf_models.SEQUENCE + 8,
    num_labels=hf_models.TEXT_LABELS,
)
_VIT = dict(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4)
_ENCODER = dict(num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=128)

#: Architectures beyond ``tests/hf_models.py``: name -> factory of a randomly initialised model.
EXTRA_TEXT: dict[str, Callable[[], torch.nn.Module]] = {
    "roberta": lambda: hf.RobertaForSequenceClassification(hf.RobertaConfig(**_ENCODER, **_TEXT)),
    "albert": lambda: hf.AlbertForSequenceClassification(
        hf.AlbertConfig(embedding_size=32, **_ENCODER, **_TEXT)
    ),
    "electra": lambda: hf.ElectraForSequenceClassification(
        hf.ElectraConfig(embedding_size=32, **_ENCODER, **_TEXT)
    ),
}
EXTRA_VISION: dict[str, Callable[[], torch.nn.Module]] = {
    "deit": lambda: hf.DeiTForImageClassification(hf.DeiTConfig(intermediate_size=128, **_VIT, **_VISION)),
    "beit": lambda: hf.BeitForImageClassification(hf.BeitConfig(
        intermediate_size=128, use_mean_pooling=True, **_VIT, **_VISION)),
    "regnet": lambda: hf.RegNetForImageClassification(hf.RegNetConfig(
        embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], groups_width=8, **_VISION)),
    "efficientnet": lambda: hf.EfficientNetForImageClassification(hf.EfficientNetConfig(
        image_size=32, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320, **_VISION)),
    "convnextv2": lambda: hf.ConvNextV2ForImageClassification(hf.ConvNextV2Config(
        num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], **_VISION)),
    "mobilevit": lambda: hf.MobileViTForImageClassification(hf.MobileViTConfig(
        image_size=32, hidden_sizes=[16, 24, 32], neck_hidden_sizes=[8, 16, 24, 32, 40, 48, 96],
        expand_ratio=2.0, num_attention_heads=2, **_VISION)),
    "poolformer": lambda: hf.PoolFormerForImageClassification(hf.PoolFormerConfig(
        depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 48, 64], **_VISION)),
}  # fmt: skip
EXTRA_VISION["dinov2"] = lambda: hf.Dinov2ForImageClassification(hf.Dinov2Config(
    intermediate_size=128, **_VIT, **_VISION))  # fmt: skip
EXTRA_TEXT["gpt2"] = lambda: hf.GPT2ForSequenceClassification(hf.GPT2Config(
    n_layer=2, n_head=4, n_embd=64, vocab_size=hf_models.VOCAB, n_positions=hf_models.SEQUENCE + 8,
    num_labels=hf_models.TEXT_LABELS, pad_token_id=0))  # fmt: skip
TEXT = {**hf_models.TEXT, **EXTRA_TEXT}
ARCHITECTURES = {**TEXT, **hf_models.VISION, **EXTRA_VISION}
#: Models built from torch (the layouts of timm and torchvision, which cannot be imported here) and
#: jobs beyond class scores of one input: name -> (factory, data, kind, the search's own settings).
OWN: dict[str, tuple[Callable, Callable, str, dict]] = {
    "timm_vit": (zoo.fused_qkv_vit, zoo.digits16_data, "vision (timm Attention, reshape(B, N, C))", {}),
    "vit_free_heads": (zoo.free_heads_vit, zoo.digits16_data, "vision (fused qkv, heads pruned)", {}),
    "timm_swin": (zoo.timm_swin, zoo.digits16_data, "vision (timm Swin: windows, bias table)", {}),
    "torchvision_vit": (zoo.torchvision_vit, zoo.digits16_data, "vision (nn.MultiheadAttention)", {}),
    "shufflenet_v2": (zoo.shufflenet_v2, zoo.digits16_data, "vision (channel shuffle)", {}),
    "shufflenet_v2_cs": (zoo.shufflenet_v2_module_shuffle, zoo.digits16_data, "vision (nn.ChannelShuffle)",
                         {}),
    "unet": (zoo.UNet, zoo.squares_data, "segmentation (own loss, mIoU)",
             {"loss": zoo.pixel_loss, "metric": zoo.mean_iou}),
    "csp_detector": (zoo.csp_detector, zoo.cell_data, "detection cells (concat, own loss and metric)",
                     {"loss": zoo.cell_loss, "metric": zoo.cell_accuracy}),
    "dict_detector": (zoo.dict_detector, zoo.cell_data, "detection (a dict of outputs, own loss and metric)",
                      {"loss": zoo.dict_cell_loss, "metric": zoo.dict_cell_accuracy}),
    "bert_padded": (lambda: hf_models.model("bert"), hf_models.padded_text_data, "text (attention mask)", {}),
    "two_input": (zoo.two_input_net, zoo.two_input_data, "image + table (two inputs)", {}),
}  # fmt: skip
ARCHITECTURES.update({name: entry[0] for name, entry in OWN.items()})


def kind(name: str) -> str:
    """What the table calls ``name``'s task."""
    return OWN[name][2] if name in OWN else "text" if name in TEXT else "vision"


def build(name: str) -> tuple[torch.nn.Module, tuple, dict]:
    """The seeded, randomly initialised model ``name`` in eval mode, its (train, val, test) and the
    search settings of its own (a loss and a metric)."""
    torch.manual_seed(0)
    model = ARCHITECTURES[name]().eval()
    if name in OWN:
        return model, OWN[name][1](), OWN[name][3]
    return model, (hf_models.text_data() if name in TEXT else hf_models.image_data()), {}


def dry_run_counts(lines: list[str]) -> dict:
    """Groups (and how many prune attention heads), removable blocks and groups left whole, read from
    the dry run's lines."""
    text = "\n".join(lines)
    groups = re.search(r"^\s*groups: (\d+)", text, re.M)
    blocks = re.search(r"^\s*removable blocks: (.*)$", text, re.M)
    left, in_left = [], False
    for line in lines:
        if line.startswith("Left whole"):
            in_left = True
        elif in_left and line.startswith("  "):
            left.append(line.strip())
        else:
            in_left = False
    block_names = [] if not blocks or blocks.group(1) == "none" else blocks.group(1).split(", ")
    return {
        "groups": int(groups.group(1)) if groups else None,
        "head_groups": len(re.findall(r"\s\d+ heads\s", text)),
        "blocks": len(block_names),
        "block_names": block_names,
        "left_whole": left,
    }


def one(name: str, out: str) -> dict:
    """Dry run and 2-trial search of ``name`` in this process; the row of the table."""
    row: dict = {"architecture": name, "kind": kind(name)}
    model, (train, val, test), own = build(name)
    row["params"] = sum(p.numel() for p in model.parameters())
    data = dict(train=train, val=val, test=test, out=out, **QUICK, **own)
    lines: list[str] = []
    stage = "dry run"
    start = time.perf_counter()
    try:
        prunepilot.search(model, dry_run=True, name=f"{name}-dry", log=lines.append, **data)
        row["dry_run_s"] = time.perf_counter() - start
        row.update(dry_run_counts(lines))
        baseline = re.search(r"^Baseline \(validation\): .*?, ([\d.]+[kMG]?FLOPs),", "\n".join(lines), re.M)
        row["baseline_flops"] = flops = parse_budget(baseline.group(1)).limit
        stage, start = "search", time.perf_counter()
        row["budget"] = budget = f"{0.8 * flops:.0f}FLOPs"
        result = prunepilot.search(model, budget=budget, name=name, log=lambda _: None, **data)
        row["search_s"] = time.perf_counter() - start
    except prunepilot.UsageError as error:
        row[f"{stage.replace(' ', '_')}_s"] = time.perf_counter() - start
        row["status"], row["stage"], row["result"] = "refused", stage, f"refused: {error}"
        return row
    except Exception as error:  # a crash of prunepilot (or the model): the row says which
        traceback.print_exc()
        row[f"{stage.replace(' ', '_')}_s"] = time.perf_counter() - start
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        row["status"], row["stage"], row["result"] = (
            "crashed",
            stage,
            f"crashed in the {stage}: {type(error).__name__}: {message}"[:300],
        )
        return row
    final = (result.report or {}).get("final") or {}
    row["exit_code"] = result.exit_code
    row["final_flops"] = final.get("flops")
    row["heads"] = final.get("heads", {})
    row["test_accuracy"] = final.get("test_accuracy")
    export = final.get("export", {})
    row["export"] = {key: export.get(key) for key in TOLERANCE}
    if result.exit_code != 0:
        row["status"], row["result"] = "budget not met", f"budget not met (exit code {result.exit_code})"
        return row
    off = [key for key, bound in TOLERANCE.items() if export.get(key) is None or not export[key] <= bound]
    onnx = export.get("onnx_max_abs_diff")
    if off:
        row["status"] = "exports differ"
        row["result"] = "exports differ: " + ", ".join(f"{key} {export.get(key)}" for key in off)
    else:
        row["status"], row["result"] = "searched", f"searched (budget met), ONNX diff {onnx:.1g}"
    return row


def _rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (0 when it cannot be read)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def run_child(name: str, timeout: float, memory_bytes: int, folder: Path) -> dict:
    """Runs :func:`one` for ``name`` in a child process under the time and memory bound."""
    stdout, stderr = folder / f"{name}.out", folder / f"{name}.err"
    command = [sys.executable, __file__, "--one", name, "--out", str(folder / "runs")]
    start = time.perf_counter()
    with open(stdout, "w") as out, open(stderr, "w") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True)
    killed = None
    while True:  # wait4 (not Popen.wait): the child's own peak memory comes with its exit status
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if killed is None and time.perf_counter() - start > timeout:
            killed = f"timed out after {timeout:.0f} s"
        elif killed is None and _rss_bytes(child.pid) > memory_bytes:
            killed = f"over the memory bound of {memory_bytes / 2**30:.1f} GiB"
        if killed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
        time.sleep(0.2)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    peak = usage.ru_maxrss * 1024  # KiB on Linux
    rows = [line[len(MARK) :] for line in stdout.read_text().splitlines() if line.startswith(MARK)]
    if rows and not killed:
        row = json.loads(rows[-1])
    else:
        row = {"architecture": name, "kind": kind(name)}
        if killed:
            row["status"], row["result"] = ("timed out" if "timed" in killed else "over memory bound"), killed
        else:
            tail = [line for line in stderr.read_text().splitlines() if line.strip()][-1:]
            row["status"] = "crashed"
            row["result"] = f"crashed: exit code {child.returncode}" + (f"; {tail[0][:200]}" if tail else "")
    row.update(wall_s=wall, peak_memory_bytes=peak, exit_status=child.returncode)
    if row["status"] == "crashed":
        row["stderr_tail"] = stderr.read_text().splitlines()[-30:]
    return row


def table(rows: list[dict]) -> list[str]:
    """The markdown table of ``rows``."""

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [
        "| architecture | kind | params | groups (heads) | blocks | left whole | dry run s | search s | "
        "peak memory | result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        groups = "-" if row.get("groups") is None else f"{row['groups']} ({row.get('head_groups', 0)})"
        params = f"{row['params'] / 1e3:.0f}k" if "params" in row else "-"
        lines.append(
            f"| {row['architecture']} | {row['kind']} | {params} | {groups} | {row.get('blocks', '-')} | "
            f"{len(row['left_whole']) if 'left_whole' in row else '-'} | {seconds(row.get('dry_run_s'))} | "
            f"{seconds(row.get('search_s'))} | {row['peak_memory_bytes'] / 2**20:.0f} MiB | "
            f"{row['result'].replace('|', '/')} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated architectures (default: all)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per architecture")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="resident memory bound per architecture")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child: one architecture, one JSON line
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(MARK + json.dumps(one(args.one, args.out)), flush=True)
        return
    names = [n for n in args.only.split(",") if n] or list(ARCHITECTURES)
    unknown = sorted(set(names) - set(ARCHITECTURES))
    if unknown:
        parser.error(f"unknown architecture(s) {unknown}; known: {', '.join(ARCHITECTURES)}")
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            row = run_child(name, args.timeout, int(args.memory_gb * 2**30), Path(folder))
            memory = row["peak_memory_bytes"] / 2**20
            print(f"{name}: {row['result']} ({row['wall_s']:.0f} s, {memory:.0f} MiB)", flush=True)
            rows.append(row)
    date = datetime.date.today().isoformat()
    command = "benchmarks/zoo.py" + "".join(f" {a}" for a in sys.argv[1:])
    searched = sum(row["status"] == "searched" for row in rows)
    heading = [
        f"# Architecture zoo: `.venv/bin/python {command}`, {date}",
        "",
        f"{searched} of {len(rows)} searched end to end with exports checked (2 trials, budget 80% of "
        f"the baseline's FLOPs; time limit {args.timeout:.0f} s, memory bound {args.memory_gb:g} GiB each). "
        "groups (heads): prunable groups (of which attention heads); blocks: removable blocks; left whole: "
        "groups never pruned; peak memory: the child process's peak resident memory.",
        "",
    ]
    markdown = [*heading, *table(rows)]
    print("\n" + "\n".join(markdown))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "zoo.md").write_text("\n".join(markdown) + "\n")
    settings = {
        "timeout_s": args.timeout,
        "memory_gb": args.memory_gb,
        "search": QUICK,
        "tolerance": TOLERANCE,
    }
    results = {"command": command, "date": date, "settings": settings, "searched": searched, "rows": rows}
    finish(str(RESULTS / "zoo.json"), results, started)


if __name__ == "__main__":
    main()
