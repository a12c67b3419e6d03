"""The latency predictor and the interleaved timing it is calibrated with."""

import math
import random

import pytest
import torch
from torch import nn

from prunepilot.evaluators import LatencySettings, relative_latency, time_models
from prunepilot.policies import Policy, apply_policy, discover_groups
from prunepilot.search.latency_model import MIN_SAMPLES, LatencyPredictor, layer_table

SHAPE = (1, 8, 8)


def _synthetic(width: int, samples: int, seed: int):
    """Layer tables of random channel counts, and a 'latency' that steps with ``width``."""
    rng = random.Random(seed)
    base = {"a": (1000.0, 32, 32, 1), "b": (4000.0, 32, 64, 1)}
    tables, ratios = [], []
    for _ in range(samples):
        table, cost = {}, 0.1
        for name, (flops, cin, cout, _) in base.items():
            new_in, new_out = rng.randint(1, cin), rng.randint(1, cout)
            table[name] = (flops * new_in * new_out / (cin * cout), new_in, new_out, 1)
            padded = math.ceil(new_in / width) * width * math.ceil(new_out / width) * width
            cost += 0.9 * (flops / 5000.0) * padded / (cin * cout)
        tables.append(table)
        ratios.append(cost)
    return base, tables, ratios


def test_the_predictor_finds_the_vector_width_and_predicts_held_out_models():
    base, tables, ratios = _synthetic(width=8, samples=40, seed=0)
    predictor = LatencyPredictor.fit(base, tables, ratios)
    assert predictor.width == 8
    _, held_tables, held_ratios = _synthetic(width=8, samples=20, seed=1)
    errors = [abs(predictor.predict(t) - r) / r for t, r in zip(held_tables, held_ratios)]
    assert max(errors) < 0.01
    assert predictor.alpha == 0  # exact measurements: nothing to shrink
    assert predictor.describe() == {
        "samples": 40,
        "vector_width": 8,
        "channel_term": predictor.channel_term,
        "layer_term": False,
        "ridge_alpha": predictor.alpha,
        "cv_mape": predictor.cv_mape,
    }


def test_the_predictor_learns_the_fixed_cost_of_layers_that_removed_blocks_take_away():
    rng = random.Random(4)
    base = {"a": (1000.0, 256, 256, 1), "b": (4000.0, 256, 512, 1)}  # too wide for padding to mimic it

    def tables(samples: int) -> list[dict]:
        made = []
        for _ in range(samples):
            table = {}
            for name, (flops, cin, cout, _) in base.items():
                if name == "a" and rng.random() < 0.5:
                    continue  # the layer's block was removed
                new_in, new_out = rng.randint(1, cin), rng.randint(1, cout)
                table[name] = (flops * new_in * new_out / (cin * cout), new_in, new_out, 1)
            made.append(table)
        return made

    def latency(table: dict) -> float:  # each present layer costs 0.2 however few channels it keeps
        return 0.05 + sum(0.2 + 0.1 * table[n][0] / base[n][0] for n in table)

    measured = tables(40)
    predictor = LatencyPredictor.fit(base, measured, [latency(t) for t in measured])
    assert predictor.layer_term and predictor.describe()["layer_term"]
    held = tables(20)
    assert any("a" not in t for t in held) and any("a" in t for t in held)
    for table in held:
        assert predictor.predict(table) == pytest.approx(latency(table), rel=0.01)


def test_the_predictor_learns_work_that_grows_with_output_channels_not_flops():
    base, tables, _ = _synthetic(width=1, samples=40, seed=2)
    # Element-wise work after each layer: linear in its output channels (FLOPs are quadratic).
    ratios = [0.1 + sum(0.45 * table[n][2] / base[n][2] for n in base) for table in tables]
    predictor = LatencyPredictor.fit(base, tables, ratios)
    assert predictor.channel_term
    _, held_tables, _ = _synthetic(width=1, samples=20, seed=3)
    for table in held_tables:
        truth = 0.1 + sum(0.45 * table[n][2] / base[n][2] for n in base)
        assert predictor.predict(table) == pytest.approx(truth, rel=0.01)
    refit = predictor.refit(
        held_tables, [0.1 + sum(0.45 * t[n][2] / base[n][2] for n in base) for t in held_tables]
    )
    assert refit.samples == 60 and predictor.samples == 40


def test_the_predictor_shrinks_its_fit_when_few_noisy_measurements_meet_many_layers():
    rng = random.Random(5)
    base = {f"l{i}": (1000.0, 16, 16, 1) for i in range(10)}

    def tables(samples: int) -> list[dict]:
        return [
            {n: (f * (k := rng.randint(1, 16)) / 16, 16, k, 1) for n, (f, *_) in base.items()}
            for _ in range(samples)
        ]

    def latency(table: dict) -> float:  # every layer alike
        return 0.1 + sum(0.09 * table[n][0] / base[n][0] for n in base)

    measured = tables(16)
    noisy = [latency(t) * rng.uniform(0.8, 1.2) for t in measured]  # measured with 20% noise
    predictor = LatencyPredictor.fit(base, measured, noisy)
    assert predictor.alpha > 0 and predictor.describe()["ridge_alpha"] == predictor.alpha
    held = tables(40)
    errors = [abs(predictor.predict(t) - latency(t)) / latency(t) for t in held]
    assert sum(errors) / len(errors) < 0.2  # about the noise of one measurement


def test_the_predictor_weighs_its_errors_as_shares_of_the_latency_so_small_models_are_not_lost():
    # One layer whose latency is convex in its channels: no additive fit is exact. Least squares on
    # the plain ratios spends its error on the small models (predicted near zero, 98% off).
    base = {"a": (6400.0, 1, 64, 1)}

    def table(channels: int) -> dict:
        return {"a": (100.0 * channels, 1, channels, 1)}

    def latency(channels: int) -> float:
        return 0.05 + 0.95 * (channels / 64) ** 2

    measured = range(4, 65, 4)
    tables, ratios = [table(k) for k in measured], [latency(k) for k in measured]

    def errors(predictor: LatencyPredictor) -> dict[int, float]:
        return {k: abs(predictor.predict(table(k)) - latency(k)) / latency(k) for k in range(2, 65, 2)}

    relative, plain = (
        errors(LatencyPredictor.fit(base, tables, ratios)),
        errors(LatencyPredictor.fit(base, tables, ratios, relative=False)),
    )
    assert max(relative[k] for k in (2, 4, 6, 8)) < 0.4 < min(plain[k] for k in (2, 4, 6))
    assert sum(relative.values()) / len(relative) < 0.22 < sum(plain.values()) / len(plain)
    assert LatencyPredictor.fit(base, tables, ratios, relative=False).refit(tables, ratios).relative is False


def test_the_predictor_refuses_too_few_or_bad_measurements():
    base, tables, ratios = _synthetic(width=1, samples=MIN_SAMPLES, seed=0)
    with pytest.raises(ValueError, match="'samples' parameter of LatencyPredictor must be at least"):
        LatencyPredictor.fit(base, tables[:-1], ratios[:-1])
    with pytest.raises(ValueError, match="pair up"):
        LatencyPredictor.fit(base, tables, ratios[:-1])
    with pytest.raises(ValueError, match="'ratios' parameter"):
        LatencyPredictor.fit(base, tables, [0.0, *ratios[1:]])


def test_layer_table_reads_the_channels_of_a_pruned_model(trained_tiny):
    names = [g.name for g in discover_groups(trained_tiny, SHAPE)]
    pruned = apply_policy(trained_tiny, Policy.uniform(names, 0.5), SHAPE).model
    before, after = layer_table(trained_tiny, SHAPE), layer_table(pruned, SHAPE)
    assert before["stem.0"][1:] == (1, 8, 1) and after["stem.0"][1:] == (1, 4, 1)
    assert after["fc"][1:3] == (8, 10)  # the classifier keeps its outputs
    assert after["layer1.conv2"][0] < before["layer1.conv2"][0]


def test_relative_latency_tells_a_small_model_from_a_large_one():
    small = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1)).eval()
    large = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1)).eval()
    settings = LatencySettings(batch_size=8, warmup=2, repeats=9)
    assert relative_latency(small, large, (1, 16, 16), settings) < 0.5
    times = time_models([small, large], (1, 16, 16), settings)
    assert len(times) == 2 and times[0] < times[1]
    assert torch.get_num_threads() >= 1
