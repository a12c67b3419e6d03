"""Ranking a task's input features by how much they tell of the label, for input-feature pruning.

Features are ranked on the training split only, once per search, by their mutual information with
the class label (scikit-learn's ``mutual_info_classif``); when the labels are not integer classes
or the mutual information says nothing (all zero or not finite), by their variance instead (which
ranks by scale: the report names the method that ran).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from prunepilot.adapters import Split, batches
from prunepilot.errors import UsageError

#: Samples of the training split read at most (a random subset beyond it, fixed by the seed): the
#: nearest-neighbour estimate of mutual information grows as n log n per feature.
MAX_SAMPLES = 20_000
#: Batch size used to read the training split.
READ_BATCH = 512


@dataclass(frozen=True)
class FeatureRanking:
    """The input features ranked, most informative first.

    Attributes:
        order: Feature indices, most informative first (ties: lower index first).
        scores: Each feature's score, by feature index.
        method: ``"mutual_info"`` or ``"variance"``.
    """

    order: tuple[int, ...]
    scores: tuple[float, ...]
    method: str

    def to_dict(self) -> dict:
        return {"method": self.method, "order": list(self.order), "scores": list(self.scores)}


def rank_features(
    train: Dataset | DataLoader | Split, seed: int = 0, max_samples: int = MAX_SAMPLES
) -> FeatureRanking:
    """Ranks the features of ``train``'s flat inputs (shape (N, F)) by their mutual information
    with the labels, else by their variance.

    Args:
        train: The training split.
        seed: Seeds the estimate of mutual information (and the subset beyond ``max_samples``).
        max_samples: Samples used at most.

    Raises:
        UsageError: when the inputs are not flat features or the split is empty.
    """
    inputs, labels = _read(train)
    if len(inputs) > max_samples:
        chosen = np.sort(np.random.default_rng(seed).choice(len(inputs), max_samples, replace=False))
        inputs, labels = inputs[chosen], labels[chosen]
    scores = _mutual_info(inputs, labels, seed)
    method = "mutual_info"
    if scores is None:
        scores, method = _variance(inputs), "variance"
    order = np.argsort(-scores, kind="stable")
    return FeatureRanking(tuple(int(i) for i in order), tuple(float(s) for s in scores), method)


def _read(train: Dataset | DataLoader | Split) -> tuple[np.ndarray, np.ndarray | None]:
    """The split's inputs as float64 N x F, and its labels as int64 classes (None when they are not
    one integer class per sample)."""
    inputs, labels = [], []
    for x, y in batches(train, READ_BATCH):
        if x.dim() != 2:
            raise UsageError(
                "Input features can be ranked only for flat features (samples of shape (F,)); "
                f"the data's samples have shape {tuple(x.shape[1:])}.",
                "input_features",
            )
        inputs.append(x.detach().to("cpu", torch.float64))
        labels.append(torch.as_tensor(y).detach().cpu())
    if not inputs:
        raise UsageError("The training split yields no batch (it is empty).", "data")
    x = torch.cat(inputs).numpy()
    classes = all(y.dim() == 1 and len(y) == len(b) for y, b in zip(labels, inputs)) and not any(
        y.is_floating_point() or y.is_complex() or y.dtype == torch.bool for y in labels
    )
    return x, torch.cat(labels).to(torch.int64).numpy() if classes else None


def _mutual_info(inputs: np.ndarray, labels: np.ndarray | None, seed: int) -> np.ndarray | None:
    """Each feature's mutual information with the labels, or None when it cannot rank them."""
    if labels is None or len(np.unique(labels)) < 2 or not np.isfinite(inputs).all():
        return None
    from sklearn.feature_selection import mutual_info_classif

    try:
        scores = np.asarray(mutual_info_classif(inputs, labels, random_state=seed), dtype=np.float64)
    except ValueError:
        return None
    if not np.isfinite(scores).all() or not (scores > 0).any():
        return None
    return scores


def _variance(inputs: np.ndarray) -> np.ndarray:
    """Each feature's variance over its finite values (0 for a feature without any)."""
    finite = np.where(np.isfinite(inputs), inputs, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanvar of a column without a finite value
        variance = np.nanvar(finite, axis=0)
    return np.nan_to_num(variance, nan=0.0, posinf=0.0)
