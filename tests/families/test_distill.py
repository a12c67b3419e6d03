"""Distillation: the KL term, the teacher hooked on the student's forward pass, any loss."""

import copy

import pytest
import torch
from torch.nn import functional

from prunepilot.adapters import Loss
from prunepilot.errors import UsageError
from prunepilot.families.distill import Distillation, Teacher, distilled, kd_term
from prunepilot.training import fine_tune
from tests import zoo


def test_the_term_is_zero_for_equal_scores_positive_otherwise_and_trains_only_the_student():
    student = torch.randn(6, 10, requires_grad=True)
    assert kd_term(student, student.detach().clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)
    teacher = torch.randn(6, 10, requires_grad=True)
    value = kd_term(student, teacher, 4.0)
    assert value.item() > 0
    value.backward()
    assert student.grad is not None and teacher.grad is None
    # T^2 times the per-sample KL of the softened distributions, averaged over samples.
    expected = (
        functional.softmax(teacher / 4, -1)
        * (functional.log_softmax(teacher / 4, -1) - functional.log_softmax(student / 4, -1))
    ).sum(-1).mean() * 16
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_scores_per_position_are_averaged_over_positions():
    student, teacher = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    flat = kd_term(student.reshape(10, 7), teacher.reshape(10, 7), 2.0)
    assert kd_term(student, teacher, 2.0).item() == pytest.approx(flat.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("name", "bad"), [("temperature", 0), ("weight", -1.0), ("weight", float("nan")), ("temperature", True)]
)
def test_settings_are_checked(name, bad):
    with pytest.raises(
        UsageError, match=f"The '{name}' parameter of Distillation must be a finite number > 0"
    ):
        Distillation(**{name: bad})


def _counting_teacher(model):
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_a_fine_tune_runs_the_teacher_once_a_step_and_leaves_it_unchanged(digits):
    teacher, student = zoo.tiny_resnet(), zoo.tiny_resnet()
    before = copy.deepcopy(teacher.state_dict())
    distillation = Distillation(temperature=2.0, weight=1.0)
    loss_of = distilled(Loss().bind(), Teacher(teacher, distillation))
    inputs, labels = next(iter(torch.utils.data.DataLoader(digits[0], batch_size=16)))
    plain = Loss().bind()(student, (inputs, labels), "cpu")
    with_kd = loss_of(student, (inputs, labels), "cpu")
    assert with_kd.item() > plain.item()  # two different models: the KL term is positive
    fine_tune(student, digits[0], steps=3, batch_size=16, lr=1e-3, teacher=Teacher(teacher, distillation))
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert teacher.training  # the teacher given is not even put in eval mode (a copy is)


def test_a_user_loss_is_distilled_too():
    model, teacher = zoo.dict_output_net(), zoo.dict_output_net()
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p))
    loader = zoo.dict_batch_loaders()[0]
    from prunepilot.adapters import LogitsModel, first_batch

    batch = first_batch(loader)
    wrapped = LogitsModel(model, "scores")
    user = Loss("tests.zoo:recording_loss").bind()
    plain = user(wrapped, batch, "cpu").item()
    kd = distilled(user, Teacher(LogitsModel(teacher, "scores"), Distillation()))(wrapped, batch, "cpu")
    assert kd.item() > plain


def test_per_pixel_scores_are_distilled_over_their_class_dimension_at_each_pixel():
    student, teacher = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    per_pixel = kd_term(student, teacher, 2.0)
    rows = [scores.permute(0, 2, 3, 1).reshape(-1, 3) for scores in (student, teacher)]
    as_rows = kd_term(rows[0], rows[1], 2.0)
    assert torch.allclose(per_pixel, as_rows)
