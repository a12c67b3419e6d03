"""Jobs beyond one input and class scores, scored as their teams score them: a BERT fed padded text
with its attention mask (fixed and dynamic padding), and a U-Net with its own pixel loss and mIoU.

For the BERT (trained briefly as a team would, then searched through the Python API): the baseline's
validation accuracy against the team's own masked evaluation, the ONNX file's inputs, and the chosen
model's masked test accuracy (its rebuilt plan, evaluated by the team's code) against the report's.
For the U-Net (32 channels wide, 64x64 images): a search to 50% of its measured latency, its exit
code, and the report's test mIoU against the user's metric on the rebuilt plan. Printed, and written to
``benchmarks/results/own_outputs.json``.

    .venv/bin/python benchmarks/own_outputs.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import prunepilot  # noqa: E402
from prunepilot.adapters import user_model  # noqa: E402
from prunepilot.export import load_plan  # noqa: E402
from tests import hf_models, zoo  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import finish  # noqa: E402

TEAM_EPOCHS = 5
SETTINGS = dict(trials=4, finetune_steps=20, final_steps=100, workers=0, progress=False, log=lambda _: None)


def padded_bert(dynamic: bool, out: str) -> dict:
    torch.manual_seed(0)
    bert = hf_models.model("bert")
    splits = hf_models.padded_text_data()
    optimizer = torch.optim.AdamW(bert.parameters(), lr=1e-3)
    bert.train()
    for _ in range(TEAM_EPOCHS):  # the team's own training, with the mask
        for batch in DataLoader(splits[0], batch_size=32, shuffle=True):
            optimizer.zero_grad()
            bert(**batch).loss.backward()
            optimizer.step()
    bert.eval()
    collate = hf_models.trimmed if dynamic else None
    train, val, test = (DataLoader(s, batch_size=32, collate_fn=collate) for s in splits)
    masked_val = hf_models.masked_accuracy(bert, val)
    batch = next(iter(val))
    with torch.no_grad():  # how much the mask changes the scores (an unmasked score is not the team's)
        gap = (bert(**batch).logits - bert(input_ids=batch["input_ids"]).logits).abs().max()
    budget = "2.44MFLOPs"  # 60% of its 4.07 MFLOPs: this tiny model's latency is mostly overhead
    result = prunepilot.search(bert, train=train, val=val, test=test, budget=budget, out=out, **SETTINGS)
    report = result.report
    session = onnxruntime.InferenceSession(str(result.run_dir / "model.onnx"))
    rebuilt = user_model(load_plan(result.run_dir, base_model=bert))
    return {
        "padding": "dynamic (each batch to its longest text)" if dynamic else "fixed (32 tokens)",
        "exit_code": result.exit_code,
        "baseline_val_accuracy": report["baseline"]["accuracy"],
        "team_masked_val_accuracy": masked_val, "baseline_flops": report["baseline"]["flops"],
        "baseline_difference": abs(report["baseline"]["accuracy"] - masked_val),
        "mask_changes_logits_by": float(gap),
        "onnx_inputs": [i.name for i in session.get_inputs()],
        "report_test_accuracy": report["final"]["test_accuracy"],
        "team_masked_test_accuracy_of_rebuilt_plan": hf_models.masked_accuracy(rebuilt, test),
        "flops": report["final"]["flops"],
    }  # fmt: skip


def unet(out: str) -> dict:
    torch.manual_seed(0)
    model = zoo.UNet(width=32)  # wide and on 64x64 images, so that its latency is mostly compute
    train, val, test = zoo.squares_data(side=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step, batch in enumerate(DataLoader(train, batch_size=32, shuffle=True)):
        optimizer.zero_grad()
        zoo.pixel_loss(model, batch).backward()
        optimizer.step()
        if step == 30:
            break
    model.eval()
    result = prunepilot.search(model, train=train, val=val, test=test, budget="50%", loss=zoo.pixel_loss,
                               metric=zoo.mean_iou, out=out, **SETTINGS)  # fmt: skip
    final = (result.report or {}).get("final") or {}
    row = {"exit_code": result.exit_code, "baseline_val_miou": result.report["baseline"]["accuracy"]}
    if final:
        images, masks = test[:]
        with torch.no_grad():
            rebuilt = zoo.mean_iou(load_plan(result.run_dir, base_model=model)(images), masks)
        row.update(report_test_miou=final["test_accuracy"], user_metric_on_rebuilt_plan=rebuilt,
                   latency_ms=final["latency_ms"])  # fmt: skip
        row["baseline_latency_ms"] = result.report["baseline"]["latency_ms"]
    return row


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        results = {
            "bert_fixed_padding": padded_bert(False, f"{folder}/fixed"),
            "bert_dynamic_padding": padded_bert(True, f"{folder}/dynamic"),
            "unet_50_percent_latency": unet(f"{folder}/unet"),
        }
    for name, row in results.items():
        shown = (f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
        print(f"{name}: " + ", ".join(shown))
    finish("benchmarks/results/own_outputs.json", results, started)


if __name__ == "__main__":
    main()
