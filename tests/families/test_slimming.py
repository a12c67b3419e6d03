"""The slimming warm-up: the L1 penalty on BatchNorm scales, its cache, and a model without any."""

import copy

import pytest
import torch

from prunepilot.families import slimming
from prunepilot.families.slimming import NO_BATCHNORM, batchnorm_scales, bn_l1, slim
from prunepilot.training import fine_tune
from prunepilot.trial import TrialSettings
from tests import zoo


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test starts with no slimmed model cached."""
    monkeypatch.setenv("PRUNEPILOT_CACHE", str(tmp_path))


def test_the_penalty_adds_reg_times_the_sign_to_batchnorm_scale_gradients_only(trained_tiny):
    model = copy.deepcopy(trained_tiny)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    with torch.no_grad():
        batchnorm_scales(model)[0][0] = -0.5
    bn_l1(0.25)(model)
    scales = {id(s) for s in batchnorm_scales(model)}
    for p in model.parameters():
        if id(p) in scales:
            assert torch.equal(p.grad, 0.25 * torch.sign(p.detach()))
        else:
            assert not p.grad.any()
    assert batchnorm_scales(model)[0].grad[0].item() == -0.25


def test_the_warm_up_shrinks_scales_more_than_training_without_it_and_leaves_the_model_given(
    trained_tiny, digits
):
    settings = TrialSettings(batch_size=32, lr=3e-3)
    before = copy.deepcopy(trained_tiny.state_dict())
    slimmed, record = slim(trained_tiny, digits[0], 40, 0.05, settings)
    plain = copy.deepcopy(trained_tiny)
    fine_tune(plain, digits[0], 40, 32, 3e-3)

    def mean_scale(model):
        return torch.cat([s.detach().abs() for s in batchnorm_scales(model)]).mean().item()

    assert mean_scale(slimmed) < mean_scale(plain) - 0.03  # AdamW: about lr a step toward 0
    assert record["bn_layers"] == len(batchnorm_scales(trained_tiny)) and record["cached"] is False
    assert record["mean_scale_after"] == pytest.approx(mean_scale(slimmed), abs=1e-4)
    assert record["mean_scale_before"] == pytest.approx(mean_scale(trained_tiny), abs=1e-4)
    assert all(torch.equal(before[k], v) for k, v in trained_tiny.state_dict().items())


def test_a_second_warm_up_of_the_same_model_comes_from_the_cache(trained_tiny, digits, monkeypatch):
    settings = TrialSettings(batch_size=32, seed=3)
    first, _ = slim(trained_tiny, digits[0], 5, 1e-3, settings)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(slimming, "fine_tune", no_training)
    second, record = slim(trained_tiny, digits[0], 5, 1e-3, settings)
    assert record["cached"] is True
    assert all(torch.equal(v, second.state_dict()[k]) for k, v in first.state_dict().items())
    with pytest.raises(AssertionError, match="trained again"):  # other settings: another warm-up
        slim(trained_tiny, digits[0], 6, 1e-3, settings)


def test_a_model_without_batchnorm_is_left_as_it_is_with_a_note(digits):
    model = zoo.mlp_logsoftmax()
    same, record = slim(model, digits[0], 5, 1e-4, TrialSettings())
    assert same is model and record["note"] == NO_BATCHNORM and record["bn_layers"] == 0
