"""What a search works on: a model and its data splits."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.utils.data import Dataset


@dataclass
class TaskData:
    """The data a trial may see: the training and validation splits (never the test split).

    Attributes:
        train: (input, label) pairs for BatchNorm recalibration and fine-tuning.
        val: (input, label) pairs that score trials.
        input_shape: Shape of one input sample, without the batch dimension.
    """

    train: Dataset
    val: Dataset
    input_shape: tuple[int, ...]


@dataclass
class Task:
    """A model to prune, its data, and where it came from.

    Attributes:
        name: Short description for reports (``digits`` or the factory's import path).
        model: The trained model (never mutated by prunepilot).
        train: Training split.
        val: Validation split (scores trials).
        test: Test split (touched once, for the chosen model).
        input_shape: Shape of one input sample, without the batch dimension.
        unslimmed: The model as given, when a slimming warm-up made ``model`` (see
            :mod:`prunepilot.families.slimming`); None otherwise.
        class_scores: The model outputs class scores, one row a sample, and the labels are classes
            (the default loss, metric and data checks read them); False when they are not, which
            only the user's own loss and metric may read (per-pixel scores and masks).
    """

    name: str
    model: nn.Module
    train: Dataset
    val: Dataset
    test: Dataset
    input_shape: tuple[int, ...]
    unslimmed: nn.Module | None = None
    class_scores: bool = True

    @property
    def baseline_model(self) -> nn.Module:
        """The model as given: what the budget and the report's baseline are measured on."""
        return self.model if self.unslimmed is None else self.unslimmed

    @property
    def search_data(self) -> TaskData:
        """The splits a trial may use."""
        return TaskData(self.train, self.val, self.input_shape)
