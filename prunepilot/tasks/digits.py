"""The built-in default task: a small residual CNN on scikit-learn's digits, offline.

The model is trained with a fixed seed on first use and cached (``$PRUNEPILOT_CACHE``, default
``~/.cache/prunepilot``); later runs load the cached weights with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

from prunepilot.evaluators.proxy import fine_tune
from prunepilot.rundir import write_atomically
from prunepilot.tasks.base import Task

INPUT_SHAPE = (1, 8, 8)
SPLIT_SEED = 0
TRAIN_SEED = 0
TRAIN_STEPS = 1500
TRAIN_LR = 3e-3
TRAIN_BATCH = 64


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class DigitsResNet(nn.Module):
    """A small ResNet for 8x8 single-channel images: stem, three residual blocks, classifier."""

    def __init__(self, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.layer3 = BasicBlock(2 * width, 2 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def digits_datasets() -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """Fixed stratified 60/20/20 train/val/test split of the 1,797 digits, scaled to [0, 1]."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_rest, y_train, y_rest = train_test_split(
        images, labels, test_size=0.4, random_state=SPLIT_SEED, stratify=labels
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=SPLIT_SEED, stratify=y_rest
    )

    def dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))

    return dataset(x_train, y_train), dataset(x_val, y_val), dataset(x_test, y_test)


def cache_dir() -> Path:
    """Where trained default-task weights are cached."""
    return Path(os.environ.get("PRUNEPILOT_CACHE", Path.home() / ".cache" / "prunepilot"))


def digits_task(width: int = 32, progress: bool = True) -> Task:
    """The default task, training (once) and caching the model if needed."""
    train, val, test = digits_datasets()
    model = DigitsResNet(width)
    key = hashlib.sha256(
        f"digits-resnet-w{width}-s{TRAIN_SEED}-{TRAIN_STEPS}-{TRAIN_LR}-{SPLIT_SEED}".encode()
    ).hexdigest()[:12]
    path = cache_dir() / f"digits_resnet_{key}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        if progress:
            print(f"Training the default digits model once (cached at {path}) ...", flush=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TRAIN_SEED)
            model = DigitsResNet(width)
            fine_tune(model, train, TRAIN_STEPS, TRAIN_BATCH, TRAIN_LR, seed=TRAIN_SEED)
        _save_atomically(model.state_dict(), path)
    return Task("digits", model.eval(), train, val, test, INPUT_SHAPE)


def _save_atomically(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(path, buffer.getvalue())
