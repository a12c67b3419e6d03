"""Ranking input features on the training split: mutual information, else variance."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from prunepilot.errors import UsageError
from prunepilot.families.feature_ranking import rank_features


def _data(samples: int = 200, features: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (samples,), generator=generator)
    inputs = torch.randn(samples, features, generator=generator)
    return inputs, labels


def test_a_feature_equal_to_the_label_ranks_first():
    inputs, labels = _data()
    inputs[:, 3] = labels.float()
    ranking = rank_features(TensorDataset(inputs, labels), seed=0)
    assert ranking.method == "mutual_info"
    assert ranking.order[0] == 3 and sorted(ranking.order) == list(range(6))
    assert len(ranking.scores) == 6 and ranking.scores[3] == max(ranking.scores)


def test_the_ranking_is_fixed_by_the_seed_and_reads_data_loaders_too():
    inputs, labels = _data()
    inputs[:, 1] += 2 * labels.float()
    first = rank_features(TensorDataset(inputs, labels), seed=4)
    again = rank_features(DataLoader(TensorDataset(inputs, labels), batch_size=17), seed=4)
    assert first == again and first.order[0] == 1


def test_labels_that_are_not_classes_fall_back_to_variance():
    inputs, _ = _data()
    inputs[:, 2] *= 10
    targets = inputs[:, 0].clone()  # a regression target
    ranking = rank_features(TensorDataset(inputs, targets), seed=0)
    assert ranking.method == "variance" and ranking.order[0] == 2


def test_mutual_information_that_says_nothing_falls_back_to_variance():
    inputs, _ = _data()
    inputs[:, 5] *= 3
    one_class = torch.zeros(len(inputs), dtype=torch.long)
    ranking = rank_features(TensorDataset(inputs, one_class), seed=0)
    assert ranking.method == "variance" and ranking.order[0] == 5


def test_inputs_that_are_not_flat_features_are_refused_in_one_line():
    images = torch.rand(20, 1, 8, 8)
    with pytest.raises(UsageError, match=r"flat features .* shape \(1, 8, 8\)\.$") as raised:
        rank_features(TensorDataset(images, torch.zeros(20, dtype=torch.long)))
    assert "\n" not in str(raised.value)
