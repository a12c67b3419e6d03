"""Reading the user's batches: tuples or dicts, from Datasets or DataLoaders."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from prunepilot.adapters import BatchFormat, Split, batches, first_batch, samples
from prunepilot.errors import UsageError
from tests import zoo

X = torch.arange(40, dtype=torch.float32).reshape(10, 4)
Y = torch.arange(10) % 3


def test_tuple_batches_of_a_dataset_are_read_in_order():
    read = list(batches(TensorDataset(X, Y), 4))
    assert [len(inputs) for inputs, _ in read] == [4, 4, 2]
    assert torch.equal(torch.cat([inputs for inputs, _ in read]), X)
    assert torch.equal(torch.cat([labels for _, labels in read]), Y)


def test_a_shuffled_dataset_takes_full_batches_in_a_seeded_order_new_each_epoch():
    once = batches(TensorDataset(X, Y), 4, shuffle=True, seed=3)
    first, second = [torch.cat([i for i, _ in once]) for _ in range(2)]
    again = torch.cat([i for i, _ in batches(TensorDataset(X, Y), 4, shuffle=True, seed=3)])
    assert len(first) == 8 and torch.equal(first, again)
    assert not torch.equal(first, second)


def test_dict_batches_are_read_by_default_keys_and_keep_the_raw_batch():
    loader = DataLoader([{"pixel_values": x, "labels": y, "id": i} for i, (x, y) in enumerate(zip(X, Y))], 5)
    batch = first_batch(loader)
    inputs, labels = batch
    assert torch.equal(inputs, X[:5]) and torch.equal(labels, Y[:5])
    assert torch.equal(batch.raw["id"], torch.arange(5))


def test_named_keys_are_read_and_a_missing_key_is_named():
    loader = DataLoader([{"a": x, "b": y} for x, y in zip(X, Y)], 5)
    inputs, labels = first_batch(Split(loader, BatchFormat(input_key="a", label_key="b")))
    assert torch.equal(inputs, X[:5]) and torch.equal(labels, Y[:5])
    with pytest.raises(UsageError, match=r"Cannot tell which key .* model's input: they have \['a', 'b'\]"):
        first_batch(loader)
    with pytest.raises(UsageError, match=r"no key 'c' \(set by label_key\); they have \['a', 'b'\]"):
        first_batch(Split(loader, BatchFormat(input_key="a", label_key="c")))


def test_a_data_loader_is_used_as_it_is():
    loader = DataLoader(TensorDataset(X, Y), batch_size=3)
    assert [len(i) for i, _ in batches(loader, batch_size=64)] == [3, 3, 3, 1]
    assert torch.equal(samples(loader, 7), X[:7])


def test_batches_without_labels_are_refused_naming_what_is_accepted():
    with pytest.raises(UsageError, match=r"a list of 1 Tensor; accepted: an \(inputs, labels\) tuple"):
        first_batch(TensorDataset(X))


def test_the_dict_loaders_of_the_zoo_read_as_pairs():
    train, _, _ = zoo.dict_batch_loaders(batch_size=16)
    inputs, labels = first_batch(train)
    assert inputs.shape == (16, 1, 8, 8) and labels.dtype == torch.int64
