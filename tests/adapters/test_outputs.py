"""Reading the user's model outputs: tensors, tuples, dicts, ModelOutput-like objects."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from prunepilot.adapters import LogitsModel, as_logits_model, logits_of, user_model
from prunepilot.errors import UsageError
from tests import zoo

T = torch.ones(2, 3)


class _Output(OrderedDict):
    """Like transformers' ModelOutput: a mapping whose items are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@pytest.mark.parametrize(
    "output",
    [T, (T, torch.zeros(1)), [T], {"logits": T, "loss": torch.zeros(())}, _Output(loss=None, logits=T)],
)
def test_class_scores_are_found_in_every_kind_of_output(output):
    assert logits_of(output) is T


def test_a_named_output_key_is_read_from_dicts_and_attributes():
    assert logits_of({"scores": T, "logits": torch.zeros(1)}, "scores") is T
    assert logits_of(_Output(scores=T), "scores") is T


def test_an_output_without_scores_is_refused_naming_what_it_holds():
    with pytest.raises(UsageError, match=r"keys \['loss'\]\); set output_key") as caught:
        logits_of({"loss": torch.zeros(())})
    assert caught.value.field == "output_key"
    with pytest.raises(UsageError, match=r"got 'scores'"):
        logits_of({"logits": T}, "scores")


def test_a_model_returning_a_tensor_is_not_wrapped_and_one_returning_a_dict_is():
    net = zoo.tiny_resnet().eval()
    inputs = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert as_logits_model(net, net(inputs)) is net
        wrapped = as_logits_model(zoo.DictOutputNet(net), zoo.DictOutputNet(net)(inputs), "scores")
    assert isinstance(wrapped, LogitsModel) and user_model(wrapped).net is net
    with torch.no_grad():
        assert torch.equal(wrapped(inputs), net(inputs))


def test_a_dict_output_without_the_default_key_takes_its_first_value():
    net = zoo.dict_output_net().eval()
    inputs = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(as_logits_model(net, net(inputs))(inputs), net(inputs)["hidden"])
