"""The search-quality benchmark's third task: a Hugging Face ResNet built from a config (no download),
trained once on the 5,000-image MNIST subset with a fixed seed and cached like the built-in models.

A job names it as users name their own models: ``model="hf_task:model"``, ``data="hf_task:data"``
and ``weights=hf_task.weights()`` (which trains and caches it on first use); ``benchmarks/`` must
be importable (the benchmark puts it on ``PYTHONPATH``, for Ray's workers too).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch
import transformers as hf
from torch import nn

from prunepilot.adapters import LogitsModel
from prunepilot.rundir import cache_dir, write_atomically
from prunepilot.tasks.builtin import TRAIN_BATCH, TRAIN_LR, TRAIN_SEED, get_builtin
from prunepilot.training import fine_tune

#: The ResNet's config: four stages of one basic block each, at mnist's one channel. Wide enough that
#: 30% of its latency is reachable by pruning (at half these widths, the stem and the per-layer
#: overhead held the smallest model of the space at 57% of the baseline's latency).
CONFIG = {"num_channels": 1, "embedding_size": 32, "hidden_sizes": [64, 128, 256, 256],
          "depths": [1, 1, 1, 1], "layer_type": "basic", "num_labels": 10}  # fmt: skip
#: Training mini-batches of the cached model (the built-in mnist model's count).
TRAIN_STEPS = 1500
#: The job's name for the task (the benchmark's rows and run folders).
NAME = "hf_resnet"


def model() -> nn.Module:
    """The randomly initialised ResNet (seeded), in eval mode."""
    torch.manual_seed(TRAIN_SEED)
    return hf.ResNetForImageClassification(hf.ResNetConfig(**CONFIG)).eval()


def data():
    """The built-in mnist task's (train, val, test) splits."""
    return get_builtin("mnist").datasets()


def weights(progress: bool = True) -> Path:
    """The trained model's state dict in the cache, trained first when missing."""
    described = f"{sorted(CONFIG.items())}-{TRAIN_STEPS}-{TRAIN_LR}-{TRAIN_SEED}"
    key = hashlib.sha256(described.encode()).hexdigest()
    path = cache_dir() / f"hf_resnet_mnist_{key[:12]}.pt"
    if not path.exists():
        if progress:
            print(f"Training the Hugging Face ResNet on mnist once (cached at {path}) ...", flush=True)
        trained = model()
        # Trained through its logits (the wrapper holds the same modules).
        fine_tune(LogitsModel(trained), data()[0], TRAIN_STEPS, TRAIN_BATCH, TRAIN_LR, seed=TRAIN_SEED)
        buffer = io.BytesIO()
        torch.save(trained.state_dict(), buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, buffer.getvalue())
    return path
