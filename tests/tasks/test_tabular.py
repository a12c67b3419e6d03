"""The built-in tabular task: an MLP on the breast-cancer table, trained once and cached."""

from __future__ import annotations

import pytest
import torch

from prunepilot.tasks import BUILTIN_TASKS, builtin_task, load_task
from prunepilot.tasks.builtin import cache_dir
from prunepilot.tasks.loading import build_base_model
from prunepilot.tasks.tabular import TabularMLP


@pytest.fixture(scope="module")
def tabular():
    return builtin_task("tabular", progress=False)


def _accuracy(model: torch.nn.Module, split) -> float:
    inputs, labels = split.tensors
    with torch.no_grad():
        return float((model(inputs).argmax(1) == labels).float().mean())


def test_the_tabular_task_is_an_mlp_without_batchnorm_on_standardized_fixed_splits(tabular):
    assert (len(tabular.train), len(tabular.val), len(tabular.test)) == (341, 114, 114)
    assert tuple(tabular.input_shape) == (30,)
    sizes = [
        (m.in_features, m.out_features) for m in tabular.model.modules() if isinstance(m, torch.nn.Linear)
    ]
    assert sizes == [(30, 64), (64, 32), (32, 2)]
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in tabular.model.modules())
    train_x = tabular.train.tensors[0]
    assert torch.allclose(train_x.mean(0), torch.zeros(30), atol=1e-4)
    assert torch.allclose(train_x.std(0, unbiased=False), torch.ones(30), atol=1e-3)
    assert sorted(set(tabular.test.tensors[1].tolist())) == [0, 1]
    again = BUILTIN_TASKS["tabular"].datasets()[1]
    assert torch.equal(again.tensors[0], tabular.val.tensors[0])  # the split (and its scaling) is fixed


def test_the_tabular_model_is_trained_to_a_sensible_accuracy(tabular):
    assert _accuracy(tabular.model, tabular.test) > 0.9
    assert _accuracy(tabular.model, tabular.val) > 0.9


def test_the_tabular_model_trains_once_then_loads_from_the_cache(monkeypatch, tmp_path, tabular):
    monkeypatch.setenv("PRUNEPILOT_CACHE", str(tmp_path))
    trained = builtin_task("tabular", progress=False)  # a fresh cache: trains
    assert BUILTIN_TASKS["tabular"].cache_path().name in {p.name for p in tmp_path.iterdir()}
    assert torch.equal(trained.model.fc.weight, tabular.model.fc.weight)  # the seed fixes the training

    def no_training(*_args, **_kwargs):
        raise AssertionError("the cached model was trained again")

    monkeypatch.setattr("prunepilot.tasks.builtin.fine_tune", no_training)
    loaded = builtin_task("tabular", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(),
                                                 trained.model.state_dict().values()))  # fmt: skip


def test_adding_the_tabular_task_keeps_the_resnet_tasks_cache_keys():
    assert BUILTIN_TASKS["digits"].cache_path().name == "digits_resnet_5b640c540278.pt"
    assert BUILTIN_TASKS["mnist"].cache_path().name == "mnist_resnet_3cbc668805b3.pt"
    assert BUILTIN_TASKS["tabular"].cache_path().name.startswith("tabular_mlp_")
    assert BUILTIN_TASKS["tabular"].cache_path().parent == cache_dir()


def test_the_tabular_task_loads_through_the_checks_and_rebuilds_from_a_plan(tabular):
    task = load_task(task="tabular", progress=False)
    assert task.name == "tabular" and tuple(task.input_shape) == (30,)
    rebuilt = build_base_model({"task": "tabular"})
    assert isinstance(rebuilt, TabularMLP)
    rebuilt.load_state_dict(tabular.model.state_dict())  # the same architecture
