"""Shared fixtures: a private cache for the default task, a trained tiny model, fast settings."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Ray processes started by the tests bind to loopback only (read when ray is first imported), and
# their workers run at the tests' priority (Ray's default niceness 15 starves them on a busy machine).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_worker_niceness", "0")

import pytest
import torch

from prunepilot.evaluators import LatencySettings
from prunepilot.tasks import digits_datasets
from prunepilot.tasks.builtin import cache_dir
from prunepilot.training import fine_tune
from prunepilot.trial import TrialSettings
from tests import zoo
from tests.helpers import FAST_FLAGS, REPO


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The built-in tasks train into a cache of the test session's own (unless one is given).

    Models already in the user's cache are copied in first: a cached model is named by everything
    its training depends on (seed, steps, rate, split), so the copy is what training would give,
    and the quick loop (``-m "not slow"``) does not spend minutes training it again.
    """
    if "PRUNEPILOT_CACHE" not in os.environ:
        private = tmp_path_factory.mktemp("cache")
        for trained in cache_dir().glob("*.pt"):
            shutil.copy2(trained, private / trained.name)
        os.environ["PRUNEPILOT_CACHE"] = str(private)
    os.chdir(REPO)  # the CLI imports tests.zoo from the working directory


@pytest.fixture(scope="session")
def digits():
    """(train, val, test) of the built-in digits data."""
    return digits_datasets()


@pytest.fixture(scope="session")
def trained_tiny(digits) -> torch.nn.Module:
    """``zoo.tiny_resnet`` trained briefly on digits (about 90% accuracy)."""
    model = zoo.tiny_resnet()
    fine_tune(model, digits[0], steps=150, batch_size=64, lr=3e-3)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_weights(trained_tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of ``trained_tiny`` (a plain state dict)."""
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save(trained_tiny.state_dict(), path)
    return path


@pytest.fixture()
def fast_settings() -> TrialSettings:
    return TrialSettings(
        bn_batches=2,
        finetune_steps=5,
        batch_size=32,
        latency=LatencySettings(batch_size=4, warmup=1, repeats=3),
    )


@pytest.fixture()
def tiny_flags(tiny_weights: Path) -> list[str]:
    """CLI flags selecting the tiny model with its weights and the small digits data."""
    return [
        "--model", "tests.zoo:tiny_resnet", "--weights", str(tiny_weights),
        "--data", "tests.zoo:small_digits_data", *FAST_FLAGS,
    ]  # fmt: skip
