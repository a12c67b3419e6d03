"""Data no search can use is refused at the start, one line each, before the baseline is measured;
a trial whose loss stops being finite fails with that reason."""

from __future__ import annotations

import json

import pytest
import torch

from prunepilot.adapters import Loss
from prunepilot.training import NonFiniteLoss, fine_tune
from tests import zoo
from tests.helpers import FAST_FLAGS, assert_one_line_error, run_cli


@pytest.mark.parametrize(
    ("data", "flags", "fragments"),
    [
        ("nan_input_data", [], ["The train split's inputs hold NaN or infinite values (first at sample 0)"]),
        ("late_inf_data", [], ["The train split's inputs hold NaN or infinite values (first at sample 300)"]),
        ("out_of_range_label_data", [], ["The val split holds labels [12]", "labels must be in [0, 9]"]),
        ("tiny_train_data", ["--batch-size", "32"], ["The train split has 10 samples, fewer than one batch"]),
        ("one_class_val_data", [], ["The val split holds one class only (label 3 in all 150 samples read)"]),
        ("small_digits_data", ["--metric", "tests.zoo:constant_metric"],
         ["The metric 'tests.zoo:constant_metric' gives 0.5 on the val split whatever the scores"]),
    ],
)  # fmt: skip
def test_data_no_search_can_use_is_one_line_before_anything_is_measured(capsys, tmp_path, tiny_weights,
                                                                         data, flags, fragments):  # fmt: skip
    code, out, err = run_cli(
        capsys, "search", "--budget", "50%", "--out", tmp_path, "--model", "tests.zoo:tiny_resnet",
        "--weights", tiny_weights, "--data", f"tests.zoo:{data}", *FAST_FLAGS, *flags,
    )  # fmt: skip
    assert code == 2
    assert_one_line_error(err, *fragments)
    assert "Baseline" not in out and not list(tmp_path.iterdir())  # nothing measured, nothing written


def test_a_loss_that_stops_being_finite_stops_fine_tuning_with_the_reason():
    train = zoo.small_digits_data()[0]
    calls = []

    def blows_up(model, batch):
        calls.append(1)
        inputs, labels = batch
        loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        return loss * float("nan") if len(calls) == 3 else loss

    with pytest.raises(NonFiniteLoss, match=r"the training loss became nan at step 3 of 10"):
        fine_tune(zoo.tiny_resnet(), train, 10, 32, 1e-3, loss=Loss(blows_up))


@pytest.mark.slow
def test_a_trial_whose_loss_stops_being_finite_fails_with_the_reason(capsys, tmp_path, tiny_flags):
    flags = ["--budget", "1000ms", "--trials", "2", "--out", tmp_path, "--name", "n", *tiny_flags]
    code, _, err = run_cli(capsys, "search", *flags, "--calibration-samples", "0", "--lr", "1e9")
    assert code == 1
    assert_one_line_error(err, "every trial failed (2 of 2 with: NonFiniteLoss: the training loss became nan")
    trials = json.loads((tmp_path / "n" / "report.json").read_text())["trials"]
    assert len(trials) == 2 and all(t["state"] == "FAIL" for t in trials)
    assert all("the training loss became" in t["error"] for t in trials)
