"""A DistilBERT-style text classifier searched at half its latency: heads pruned whole, exports checked.

Builds a DistilBERT-style model from a ``transformers`` config (nothing downloaded; 4 layers of 4
heads, width 256, sequences of 64 tokens), trains it briefly on a synthetic token task (the label
is the first token modulo 3), searches it with ``budget="50%"`` through the Python API, and prints
the heads kept per layer (from ``report.json``), the latency against the baseline, the ONNX
export's largest difference from PyTorch, and the dry run's group table.

    .venv/bin/python benchmarks/transformer_heads.py [--trials N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import prunepilot  # noqa: E402
from benchmarks.results_file import finish  # noqa: E402
from prunepilot.adapters import LogitsModel  # noqa: E402
from prunepilot.training import fine_tune  # noqa: E402

SEQUENCE, VOCAB, LABELS = 64, 1000, 3


def build() -> torch.nn.Module:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    config = DistilBertConfig(n_layers=4, n_heads=4, dim=256, hidden_dim=1024, vocab_size=VOCAB,
                              max_position_embeddings=SEQUENCE, num_labels=LABELS)  # fmt: skip
    return DistilBertForSequenceClassification(config).eval()


def data(size: int, seed: int) -> TensorDataset:
    tokens = torch.randint(1, VOCAB, (size, SEQUENCE), generator=torch.Generator().manual_seed(seed))
    return TensorDataset(tokens, tokens[:, 0] % LABELS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--budget", default="50%")
    args = parser.parse_args()
    started = time.perf_counter()
    model = build()
    train, val, test = data(2000, 0), data(500, 1), data(500, 2)
    fine_tune(LogitsModel(model), train, steps=300, batch_size=64, lr=1e-3)
    with tempfile.TemporaryDirectory() as out:
        lines: list[str] = []
        prunepilot.search(model, train=train, val=val, test=test, dry_run=True, out=out, log=lines.append)
        print("\n".join(lines))
        result = prunepilot.search(
            model, train=train, val=val, test=test, budget=args.budget, trials=args.trials, out=out,
            name="heads", progress=False,
        )  # fmt: skip
        report = result.report
    final = report["final"] or {}
    heads = final.get("heads", {})
    print(f"\nBudget {args.budget}: exit code {result.exit_code}, budget met {result.budget_met}")
    if final:
        print(f"latency {final['latency_ms']:.3f} ms vs baseline {final['baseline_latency_ms']:.3f} ms "
              f"({final['latency_ms'] / final['baseline_latency_ms']:.2f}x); test accuracy "
              f"{final['test_accuracy']:.4f} (baseline {final['baseline_test_accuracy']:.4f})")  # fmt: skip
        print(f"ONNX max abs diff {final['export']['onnx_max_abs_diff']:.2e}")
        for name, kept in heads.items():
            print(f"  {name}: {kept['kept']} of {kept['baseline']} heads")
    finish(
        "benchmarks/results/transformer_heads.json",
        {"budget": args.budget, "trials": args.trials, "exit_code": result.exit_code,
         "budget_met": result.budget_met, "final": final, "dry_run": lines},
        started,
    )  # fmt: skip


if __name__ == "__main__":
    main()
