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


def test_a_trial_in_onnxruntime_is_measured_as_it_ships_and_an_unquantizable_one_runs_fp32(
    trained_tiny, digits, fast_settings
):
    from prunepilot.runtimes import DeployError
    from tests import zoo

    data = TaskData(digits[0], digits[1], SHAPE)
    space = SearchSpace(tuple(discover_groups(trained_tiny, SHAPE)), quantize="search")
    ort = replace(fast_settings, runtime="onnxruntime", quantize="search", finetune_steps=0)
    fp32 = run_trial(trained_tiny, data, space.uniform(0.25, int8=False), ort)
    int8 = run_trial(trained_tiny, data, space.uniform(0.25, int8=True), ort)
    assert not fp32.int8 and int8.int8 and int8.int8_fallback is None
    assert int8.size_bytes < fp32.size_bytes and int8.flops == fp32.flops  # FLOPs do not change
    assert abs(int8.accuracy - fp32.accuracy) < 0.05

    odd = zoo.grouped_transpose_net()
    odd_space = SearchSpace(tuple(discover_groups(odd, SHAPE)), quantize="search")
    fallback = run_trial(odd, data, odd_space.uniform(0.25, int8=True), ort)
    assert not fallback.int8 and "ConvTranspose" in fallback.int8_fallback
    with pytest.raises(DeployError, match="ConvTranspose"):  # --quantize int8 asked for it
        run_trial(odd, data, odd_space.uniform(0.25, int8=True), replace(ort, quantize="int8"))
    with pytest.raises(UsageError, match="'quantize' parameter of TrialSettings"):
        TrialSettings(quantize="fp16")
