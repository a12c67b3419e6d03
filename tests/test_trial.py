"""One trial: latency timed against the base model when the base latency is known."""

from dataclasses import replace

import pytest

from prunepilot.errors import UsageError
from prunepilot.policies import discover_groups
from prunepilot.search import SearchSpace
from prunepilot.tasks import TaskData
from prunepilot.trial import TrialSettings, run_trial

SHAPE = (1, 8, 8)


def test_a_trial_reports_the_base_latency_times_the_measured_ratio(trained_tiny, digits, fast_settings):
    space = SearchSpace(tuple(discover_groups(trained_tiny, SHAPE)))
    data = TaskData(digits[0], digits[1], SHAPE)
    settings = replace(fast_settings, finetune_steps=0, reference_latency_ms=1000.0)
    unpruned = run_trial(trained_tiny, data, space.uniform(0.0), settings)
    # The unpruned model timed against itself: a ratio near 1, so near the 1000 ms it was told.
    assert 500.0 < unpruned.latency_ms < 2000.0
    assert run_trial(trained_tiny, data, space.uniform(0.0), fast_settings).latency_ms < 100.0


@pytest.mark.parametrize("bad", [0.0, -1.0, True, "5ms"])
def test_a_reference_latency_must_be_a_positive_number(bad):
    with pytest.raises(UsageError, match="'reference_latency_ms' parameter of TrialSettings"):
        TrialSettings(reference_latency_ms=bad)
