"""The training loss: cross-entropy by default, or the user's callable on the raw batch."""

from __future__ import annotations

import pytest
import torch

from prunepilot.adapters import LogitsModel, Loss, Split
from prunepilot.errors import UsageError
from prunepilot.training import fine_tune
from tests import zoo


def test_fine_tuning_calls_the_users_loss_with_their_model_and_the_raw_batch():
    model = LogitsModel(zoo.dict_output_net(), "scores")
    train, _, _ = zoo.dict_batch_loaders(batch_size=16)
    before = [p.clone() for p in model.parameters()]
    zoo.LOSS_CALLS.clear()
    loss = fine_tune(model, Split(train), steps=3, batch_size=64, lr=1e-2, loss=Loss(zoo.recording_loss))
    assert len(zoo.LOSS_CALLS) == 3 and loss == loss  # a number, not nan
    assert all(called is model.model for called, _ in zoo.LOSS_CALLS)
    assert all(set(batch) == {"pixel_values", "labels", "id"} for _, batch in zoo.LOSS_CALLS)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_loss_named_by_import_path_is_the_same_callable():
    assert Loss("tests.zoo:recording_loss").name == "tests.zoo:recording_loss"
    assert Loss(zoo.recording_loss).name == "tests.zoo:recording_loss"
    assert Loss().name == "cross_entropy"


def test_a_loss_without_gradients_is_refused_in_one_line():
    model = LogitsModel(zoo.dict_output_net(), "scores")
    train, _, _ = zoo.dict_batch_loaders()
    with pytest.raises(UsageError, match=r"'tests.zoo:float_loss' must return a scalar tensor .* Got float"):
        fine_tune(model, Split(train), steps=1, batch_size=8, lr=1e-3, loss=Loss("tests.zoo:float_loss"))
