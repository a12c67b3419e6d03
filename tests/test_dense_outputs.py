"""Outputs beyond class scores: a segmenter with per-pixel scores and masks, searched through the
Python API with its own loss and mIoU metric; without them, one line says what makes it searchable."""

from __future__ import annotations

import pytest
import torch

import prunepilot
from prunepilot.adapters import LogitsModel
from prunepilot.evaluators import count_flops
from prunepilot.export import load_plan
from tests import zoo

FAST = dict(
    finetune_steps=10, final_steps=30, bn_batches=2, latency_repeats=3, latency_batch=8, workers=0,
    calibration_samples=8, progress=False, log=lambda _: None,
)  # fmt: skip


@pytest.fixture(scope="module")
def trained_unet():
    torch.manual_seed(0)
    model = zoo.UNet()
    train = zoo.squares_data()[0]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step, batch in enumerate(torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)):
        optimizer.zero_grad()
        zoo.pixel_loss(model, batch).backward()
        optimizer.step()
        if step == 30:
            break
    return model.eval()


@pytest.mark.slow
def test_a_segmenter_is_searched_with_its_loss_and_metric_and_its_plan_scores_as_reported(
    trained_unet, tmp_path
):
    train, val, test = zoo.squares_data()
    flops = count_flops(trained_unet, torch.zeros(1, 1, 16, 16))
    result = prunepilot.search(
        trained_unet, train=train, val=val, test=test, budget=f"{0.6 * flops / 1e3:.1f}kFLOPs", trials=3,
        loss=zoo.pixel_loss, metric=zoo.mean_iou, out=str(tmp_path), **FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.report and result.report.get("final")
    assert result.report["baseline"]["accuracy"] > 0.5  # the trained U-Net's mIoU
    rebuilt = load_plan(result.run_dir, base_model=trained_unet)
    images, masks = test[:]
    with torch.no_grad():
        mean_iou = zoo.mean_iou(rebuilt(images), masks)
    assert abs(mean_iou - result.report["final"]["test_accuracy"]) <= 1e-6
    assert result.report["final"]["flops"] <= 0.6 * flops


def test_per_pixel_labels_without_a_loss_and_metric_get_one_line_saying_what_makes_them_searchable(
    trained_unet, tmp_path
):
    train, val, test = zoo.squares_data((64, 32, 32))
    splits = {"train": train, "val": val, "test": test, "budget": "50%", "out": str(tmp_path), **FAST}
    for given in ({}, {"loss": zoo.pixel_loss}, {"metric": zoo.mean_iou}):  # both are needed
        with pytest.raises(prunepilot.UsageError, match="or come with a loss and a metric of yours"):
            prunepilot.search(trained_unet, **splits, **given)
    assert not any(tmp_path.iterdir())


def _cross_entropy(model: torch.nn.Module, batch) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])


def test_class_scores_keep_their_checks_with_a_loss_and_metric_of_the_users(trained_tiny, tmp_path):
    train, val, test = zoo.out_of_range_label_data()
    with pytest.raises(prunepilot.UsageError, match="labels"):
        prunepilot.search(trained_tiny, train=train, val=val, test=test, budget="2x", out=str(tmp_path),
                          loss=_cross_entropy, metric=zoo.accuracy_share, **FAST)  # fmt: skip


@pytest.mark.slow
def test_a_detector_answering_with_a_dict_is_searched_and_its_metric_gets_the_dict(tmp_path):
    train, val, test = zoo.cell_data((128, 48, 48))
    model = zoo.dict_detector().eval()
    flops = count_flops(LogitsModel(model), torch.zeros(1, 1, 16, 16))
    result = prunepilot.search(
        model, train=train, val=val, test=test, budget=f"{0.8 * flops:.0f}FLOPs", trials=2,
        loss=zoo.dict_cell_loss, metric=zoo.dict_cell_accuracy, out=str(tmp_path), **FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.report and result.report.get("final")
    final = result.report["final"]
    assert final["export"]["onnx_max_abs_diff"] <= 1e-4 and final["export"]["plan_max_abs_diff"] <= 1e-5
    assert [key for key, _ in final["export"]["outputs"]["structure"][1]] == ["fine", "coarse"]
    rebuilt = load_plan(result.run_dir, base_model=model)  # packs the dict as the search did
    images, cells = test[:]
    with torch.no_grad():
        unpacked = rebuilt.outputs.unpack(rebuilt(images))
        accuracy = zoo.dict_cell_accuracy(unpacked, cells)
        assert set(unpacked) == {"fine", "coarse"} and unpacked["fine"].shape == (48, 64, 2)
        assert torch.equal(unpacked["coarse"], rebuilt.model(images)["coarse"])
    assert abs(accuracy - final["test_accuracy"]) <= 1e-6
