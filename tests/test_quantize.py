"""Searches measured where the model will run (``--runtime onnxruntime``) with int8 quantization
(``--quantize``): the precision searched, int8 exports reloaded and checked, size budgets counting
int8 weights as stored, and models ONNX cannot take refused (or left fp32) with one line."""

from __future__ import annotations

import json

import onnx
import pytest

from prunepilot.cli import main
from prunepilot.settings import command_line
from prunepilot.spec import JobSpec
from tests.helpers import FAST_FLAGS, assert_one_line_error, run_cli

ORT = ["--runtime", "onnxruntime"]


def _flags(weights) -> list[str]:
    flags = [
        "--model", "tests.zoo:tiny_resnet", "--weights", str(weights),
        "--data", "tests.zoo:small_digits_data", *FAST_FLAGS,
    ]  # fmt: skip
    flags[flags.index("--calibration-samples") + 1] = "16"  # 8 for each precision
    # ONNX Runtime's fixed cost per run outweighs the tiny model's work at a batch of 8.
    flags[flags.index("--latency-batch") + 1] = "64"
    return flags


@pytest.fixture(scope="module")
def precision_search(tiny_weights, tmp_path_factory):
    """A latency budget searched with the precision chosen per policy, measured in ONNX Runtime."""
    out = tmp_path_factory.mktemp("precision")
    code = main(["search", "--budget", "60%", *ORT, "--quantize", "search", "--trials", "6",
                 "--out", str(out), "--name", "run", *_flags(tiny_weights)])  # fmt: skip
    return code, out / "run"


@pytest.fixture(scope="module")
def int8_size_search(tiny_weights, tmp_path_factory):
    """A size budget searched with every policy in int8."""
    out = tmp_path_factory.mktemp("int8")
    code = main(["search", "--budget", "35KB", "--quantize", "int8", "--trials", "3", "--out", str(out),
                 "--name", "run", *_flags(tiny_weights)])  # fmt: skip
    return code, out / "run"


def test_a_search_of_the_precision_measures_both_in_onnxruntime(precision_search):
    code, run = precision_search
    assert code in (0, 3)
    report = json.loads((run / "report.json").read_text())
    assert report["schema"] == "prunepilot.report/2"
    assert report["runtime"] == {"name": "onnxruntime", "quantize": "search", "int8_note": None}
    assert report["trial_settings"]["runtime"] == "onnxruntime"
    completed = [t for t in report["trials"] if t["state"] == "COMPLETE"]
    assert {t["int8"] for t in completed} == {False, True}
    for trial in completed:  # the policy asked for what was measured
        assert trial["int8"] == bool(trial["policy"].get("int8")) and trial["result"]["int8"] == trial["int8"]
        assert trial["result"]["timings"]["deploy"] > 0
    assert "int8" in report["latency_predictor"]  # a predictor per precision
    calibration = json.loads((run / "latency_calibration.json").read_text())
    assert sorted(set(calibration["int8"])) == [False, True]
    front_table = (run / "report.md").read_text().split("## Pareto front")[1].split("\n## ")[0]
    rows = {line.split("|")[1].strip(): line for line in front_table.splitlines() if line.startswith("| ")}
    for trial in completed:
        if trial["number"] in report["front"]:  # the front's table marks int8 points
            assert rows[str(trial["number"])].endswith("; int8 |") == trial["int8"]


def test_an_int8_trial_exports_its_int8_model_checked(precision_search, capsys):
    _, run = precision_search
    report = json.loads((run / "report.json").read_text())
    number = next(t["number"] for t in report["trials"] if t["state"] == "COMPLETE" and t["int8"])
    code, out, err = run_cli(capsys, "export", run, "--trial", number, "--format", "int8", "--quiet")
    assert code == 0, err
    folder = run / "exports" / f"trial-{number}"
    assert "model.int8.onnx" in out
    onnx.checker.check_model(onnx.load(folder / "model.int8.onnx"))
    export = json.loads((folder / "export.json").read_text())["final"]
    assert export["int8"] is True
    checked = export["export"]
    assert checked["int8_onnx"] == "model.int8.onnx"
    assert 0 < checked["int8_max_abs_diff"] < 5
    assert checked["int8_test_accuracy"] >= checked["fp32_onnx_test_accuracy"] - 0.05
    assert checked["int8_latency_ms"] > 0 and checked["fp32_onnx_latency_ms"] > 0


def test_a_size_budget_counts_int8_weights_as_stored(int8_size_search):
    code, run = int8_size_search
    assert code == 0
    report = json.loads((run / "report.json").read_text())
    final, baseline = report["final"], report["baseline"]
    assert final["int8"] and final["runtime"] == "onnxruntime"  # --quantize implies the runtime
    int8_file = run / "model.int8.onnx"
    assert final["size_bytes"] == int8_file.stat().st_size <= report["budget"]["limit"]
    assert baseline["size_bytes"] == pytest.approx((run / "model.onnx").stat().st_size, rel=1.0)  # fp32 file
    assert final["export"]["int8_test_accuracy"] == final["test_accuracy"]
    assert abs(final["test_accuracy"] - final["fp32_test_accuracy"]) <= 0.05
    assert all(t["int8"] for t in report["trials"] if t["state"] == "COMPLETE")


def test_a_model_onnx_cannot_export_is_refused_before_any_trial(capsys, tmp_path):
    model = ["--model", "tests.zoo:cummax_net", "--data", "tests.zoo:small_digits_data"]
    code, _, err = run_cli(capsys, "search", "--budget", "50%", *ORT, *model, "--out", tmp_path, *FAST_FLAGS)
    assert code == 2
    assert_one_line_error(err, "ONNX cannot export the model", "aten::cummax")
    assert list(tmp_path.iterdir()) == []  # no run started


def test_a_model_onnx_runtime_cannot_quantize_is_refused_with_int8_and_left_fp32_by_a_search(
    capsys, tmp_path
):
    model = ["--model", "tests.zoo:grouped_transpose_net", "--data", "tests.zoo:small_digits_data"]
    code, _, err = run_cli(capsys, "search", "--budget", "100%", "--quantize", "int8", "--out", tmp_path,
                           *model, *FAST_FLAGS)  # fmt: skip
    assert code == 2
    assert_one_line_error(
        err, "cannot quantize the model to int8 at its ConvTranspose operator", "--quantize search"
    )
    code, _, err = run_cli(capsys, "search", "--budget", "1GFLOPs", "--quantize", "search", "--trials", "2",
                           "--out", tmp_path, "--name", "fallback", *model, *FAST_FLAGS)  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "fallback" / "report.json").read_text())
    assert "ConvTranspose" in report["runtime"]["int8_note"]
    assert not any(t["int8"] for t in report["trials"]) and not report["final"]["int8"]


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (
            ["--runtime", "torch", "--quantize", "int8"],
            ["'quantize' parameter", "'none' with --runtime torch"],
        ),
        (
            ["--quantize", "search", "--calibration-samples", "8"],
            ["'calibration_samples' parameter", ">= 16"],
        ),
        (["--runtime", "tvm"], ["invalid choice: 'tvm'", "onnxruntime"]),
    ],
)
def test_contradictory_runtime_settings_get_one_line(capsys, tmp_path, flags, fragments):
    code, _, err = run_cli(capsys, "search", "--budget", "50%", "--out", tmp_path, "--quiet", *flags)
    assert code == 2
    assert_one_line_error(err, *fragments)


def test_a_job_file_sets_the_runtime_and_the_precision_and_a_gpu_target_is_refused(capsys, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('budget = "50%"\n[deploy]\nruntime = "onnxruntime"\nquantize = "int4"\n')
    code, _, err = run_cli(capsys, "validate", job)
    assert code == 2 and "quantize" in err and "int4" in err
    gpu_target = JobSpec(budget="50%", runtime="onnxruntime", device="cuda", workers=0)
    assert any("'cpu' with runtime onnxruntime" in str(p) for p in gpu_target.problems())  # from Python
    with command_line():
        assert any("'cpu' with --runtime onnxruntime" in str(p) for p in gpu_target.problems())
    assert JobSpec(budget="50%", quantize="search").deploy_runtime == "onnxruntime"
