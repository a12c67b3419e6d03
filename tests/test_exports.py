"""Exports that fail for one format leave the others: a model whose trace fixes the batch size still
ships its plan, and the report and log say why TorchScript and ONNX were not written; asked for
alone, the format's failure is the command's error."""

from __future__ import annotations

import json

import pytest

from prunepilot.export import load_plan
from tests.helpers import FAST_FLAGS, run_cli

pytestmark = pytest.mark.slow


def test_a_trace_that_fixes_the_batch_size_skips_its_formats_and_the_plan_ships(capsys, tmp_path):
    code, out, err = run_cli(capsys, "search", "--model", "tests.zoo:fixed_batch_vit", "--data",
                             "tests.zoo:digits16_data", "--budget", "1GFLOPs", "--trials", "2", "--out",
                             tmp_path, "--name", "r", *FAST_FLAGS)  # fmt: skip
    assert code == 0, err
    export = json.loads((tmp_path / "r" / "report.json").read_text())["final"]["export"]
    for name in ("torchscript", "onnx"):
        assert "runs on the batch size it was traced with" in export[f"{name}_error"], export
        assert name not in export
    assert not (tmp_path / "r" / "model.ts.pt").exists() and not (tmp_path / "r" / "model.onnx").exists()
    assert "warning: export skipped, torchscript: " in out
    assert "not exported: onnx: " in (tmp_path / "r" / "report.md").read_text()
    assert export["plan_max_abs_diff"] == 0.0 and load_plan(tmp_path / "r") is not None
    code, _, err = run_cli(capsys, "export", tmp_path / "r", "--trial", "0", "--format", "onnx", "--quiet")
    assert code == 1 and "Trial 0's export failed for onnx: " in err


def test_a_fused_qkv_vit_is_searched_and_exported_in_every_format(capsys, tmp_path):
    code, _, err = run_cli(capsys, "search", "--model", "tests.zoo:fused_qkv_vit", "--data",
                           "tests.zoo:digits16_data", "--budget", "1GFLOPs", "--trials", "2", "--out",
                           tmp_path, "--name", "r", *FAST_FLAGS)  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    export = report["final"]["export"]
    assert not [key for key in export if key.endswith("_error")], export
    assert export["onnx_max_abs_diff"] < 1e-4 and export["torchscript_max_abs_diff"] < 1e-4
    assert report["blocks"] == ["blocks.0"]
