"""Discovery at native resolution: the dry run of ViT-Ti, Swin-T and MobileViT-xxs (built from
``transformers`` configs at their published sizes, 224 px, randomly initialised, nothing downloaded)
on a handful of synthetic images, each in its own process: wall seconds, CPU seconds and the
process's peak resident memory. The issue's targets: at most 20 s each on this machine, and at most
2 GB of discovery memory for Swin-T.

    .venv/bin/python benchmarks/discovery_scale.py [--only vit_ti,swin_t,mobilevit_xxs]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("vit_ti", "swin_t", "mobilevit_xxs")


def build(name: str):
    import transformers as hf

    if name == "vit_ti":
        config = hf.ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                              intermediate_size=768, image_size=224, patch_size=16,
                              num_labels=10)  # fmt: skip
        return hf.ViTForImageClassification(config)
    if name == "swin_t":
        return hf.SwinForImageClassification(hf.SwinConfig(num_labels=10))  # Swin-T: 96, [2, 2, 6, 2]
    config = hf.MobileViTConfig(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320],
                                num_labels=10)  # fmt: skip
    return hf.MobileViTForImageClassification(config)  # MobileViT-xxs


def one(name: str) -> dict:
    """Runs in a child process: the dry run of ``name``, timed."""
    import torch
    from torch.utils.data import TensorDataset

    import prunepilot

    torch.manual_seed(0)
    model = build(name).eval()
    images, labels = torch.randn(16, 3, 224, 224), torch.randint(0, 10, (16,))
    data = TensorDataset(images, labels)
    lines: list[str] = []
    wall, cpu = time.perf_counter(), time.process_time()
    prunepilot.search(model, train=data, val=data, test=data, dry_run=True, budget="100GFLOPs",
                      batch_size=8, latency_repeats=3, log=lines.append, progress=False)  # fmt: skip
    return {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "dry_run_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "groups": sum(1 for line in lines if line[:1].isalpha() and "%" in line and "(" not in line),
        "left_whole": sum(1 for line in lines if line.startswith("  ") and ": " in line),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(MODELS))
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.child)))
        return 0
    rows = []
    for name in args.only.split(","):
        done = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True,
                              cwd=ROOT, timeout=1800)  # fmt: skip
        row = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {
            "model": name, "error": (done.stderr.strip().splitlines() or ["?"])[-1][:300]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = ROOT / "benchmarks" / "results" / "discovery_scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
