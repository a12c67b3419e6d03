"""Budget-aware sampling: exact static metrics, a calibrated latency screen, repair, warm starts."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from prunepilot.budget import BudgetLimit
from prunepilot.evaluators import LatencySettings, count_flops
from prunepilot.policies import GroupSetting, Policy, apply_policy, discover_groups
from prunepilot.search import SearchSpace
from prunepilot.search.calibration import Calibration, calibrate_latency, calibration_policies
from prunepilot.search.latency_model import layer_table
from prunepilot.search.screen import BudgetScreen

SHAPE = (1, 8, 8)


@pytest.fixture()
def space(trained_tiny):
    return SearchSpace(tuple(discover_groups(trained_tiny, SHAPE)))


def _flops(model, policy):
    return count_flops(apply_policy(model, policy, SHAPE).model, torch.zeros(1, *SHAPE))


def _synthetic_calibration(model, space) -> Calibration:
    """Calibration of 10 policies whose 'latency' is a fixed cost plus one proportional to FLOPs
    (deterministic, unlike timing)."""
    base_flops = _flops(model, space.uniform(0.0))
    tables, ratios = [], []
    for policy in calibration_policies(space, 10, seed=0):
        tables.append(
            {k: list(v) for k, v in layer_table(apply_policy(model, policy, SHAPE).model, SHAPE).items()}
        )
        ratios.append(0.2 + 0.8 * _flops(model, policy) / base_flops)
    return Calibration(tables, ratios, {k: list(v) for k, v in layer_table(model, SHAPE).items()})


def test_a_flops_screen_is_exact_and_finds_the_smallest_uniform_ratio_that_fits(trained_tiny, space):
    limit = 0.5 * count_flops(trained_tiny, torch.zeros(1, *SHAPE))
    screen = BudgetScreen(trained_tiny, SHAPE, BudgetLimit("flops", limit))
    policy = space.uniform(0.3)
    assert screen.predict(policy) == _flops(trained_tiny, policy)
    uniform = screen.uniform_within(space)
    ratio = next(iter(uniform.groups.values())).ratio
    assert screen.fits(uniform) and _flops(trained_tiny, uniform) <= limit
    assert not screen.fits(space.uniform(round(ratio - space.ratio_step, 6)))


def test_repair_raises_ratios_until_the_policy_fits(trained_tiny, space):
    limit = 0.3 * count_flops(trained_tiny, torch.zeros(1, *SHAPE))
    screen = BudgetScreen(trained_tiny, SHAPE, BudgetLimit("flops", limit))
    names = [g.name for g in space.groups]
    policy = Policy({n: GroupSetting(0.1 if i % 2 else 0.6, "l2") for i, n in enumerate(names)})
    assert not screen.fits(policy)
    repaired = screen.repair(policy, space)
    assert repaired is not None and screen.fits(repaired)
    for name in names:
        assert repaired.groups[name].ratio >= policy.groups[name].ratio
        assert repaired.groups[name].criterion == "l2"
    impossible = BudgetScreen(trained_tiny, SHAPE, BudgetLimit("flops", 1.0))
    assert impossible.uniform_within(space) is None
    closest = impossible.repair(policy, space)  # nothing fits: as far as the space allows
    assert {s.ratio for s in closest.groups.values()} == {space.max_ratio}


def test_fill_lowers_ratios_until_the_policy_lands_just_under_the_budget(trained_tiny, space):
    limit = 0.6 * count_flops(trained_tiny, torch.zeros(1, *SHAPE))
    screen = BudgetScreen(trained_tiny, SHAPE, BudgetLimit("flops", limit))
    names = [g.name for g in space.groups]
    policy = Policy({n: GroupSetting(0.3 if i % 2 else 0.8, "l2") for i, n in enumerate(names)})
    assert screen.fits(policy)
    filled = screen.fill(policy, space)
    assert filled != policy and screen.fits(filled) and _flops(trained_tiny, filled) <= limit
    for name in names:
        assert filled.groups[name].ratio <= policy.groups[name].ratio
        assert filled.groups[name].criterion == "l2"
    # Its shape is kept: the group pruned most is still pruned most.
    assert max(names, key=lambda n: filled.groups[n].ratio) == max(
        names, key=lambda n: policy.groups[n].ratio
    )
    # It uses the budget's slack: one grid step less pruning everywhere no longer fits.
    step_back = Policy(
        {
            n: GroupSetting(max(0.0, round(s.ratio - space.ratio_step, 6)), "l2")
            for n, s in filled.groups.items()
        }
    )
    assert not screen.fits(step_back)
    # A policy over budget cannot be filled: it comes back as given.
    over = space.uniform(0.05)
    assert not screen.fits(over) and screen.fill(over, space) == over


def test_repair_removes_every_block_when_pruning_channels_alone_cannot_fit(trained_tiny):
    blocks = ("layer1", "layer3")
    space = SearchSpace(tuple(discover_groups(trained_tiny, SHAPE)), blocks)
    thinnest = _flops(trained_tiny, space.uniform(space.max_ratio))
    shallow = _flops(trained_tiny, replace(space.uniform(space.max_ratio), removed_blocks=blocks))
    assert shallow < thinnest
    screen = BudgetScreen(trained_tiny, SHAPE, BudgetLimit("flops", (shallow + thinnest) / 2))
    repaired = screen.repair(space.uniform(0.2), space)
    assert repaired.removed_blocks == blocks and screen.fits(repaired)
    # Removing blocks is the last resort: a budget that channels alone can meet keeps them.
    screen = BudgetScreen(trained_tiny, SHAPE, BudgetLimit("flops", 1.01 * thinnest))
    assert screen.repair(space.uniform(0.2), space).removed_blocks == ()
    # The least uniform pruning that fits with every block removed, as the warm start asks.
    with_blocks = screen.uniform_within(space, blocks)
    assert with_blocks.removed_blocks == blocks and screen.fits(with_blocks)
    assert (
        next(iter(with_blocks.groups.values())).ratio
        < next(iter(screen.uniform_within(space).groups.values())).ratio
    )


def test_calibration_removes_blocks_in_about_half_its_random_policies(trained_tiny):
    space = SearchSpace(tuple(discover_groups(trained_tiny, SHAPE)), ("layer1", "layer3"))
    policies = calibration_policies(space, 32, seed=0)
    uniform, random_part = policies[:8], policies[8:]
    assert all(p.removed_blocks == () for p in uniform)
    removed = [b for p in random_part for b in p.removed_blocks]
    assert 6 <= removed.count("layer1") <= 18 and 6 <= removed.count("layer3") <= 18


def test_the_global_lamp_warm_start_fits_and_prunes_groups_unevenly(trained_tiny, space):
    limit = 0.5 * count_flops(trained_tiny, torch.zeros(1, *SHAPE))
    screen = BudgetScreen(trained_tiny, SHAPE, BudgetLimit("flops", limit))
    policy = screen.global_within(space)
    assert policy is not None and screen.fits(policy)
    assert {s.criterion for s in policy.groups.values()} == {"lamp"}
    assert len({s.ratio for s in policy.groups.values()}) > 1


def test_a_latency_screen_is_calibrated_on_measurements_and_survives_a_round_trip(trained_tiny, space):
    policies = calibration_policies(space, 10, seed=0)
    assert len(policies) == 10 and space.uniform(0.0) in policies
    settings = LatencySettings(batch_size=8, warmup=1, repeats=6)
    calibration = calibrate_latency(trained_tiny, SHAPE, policies, settings)
    assert len(calibration.ratios) == 10 and all(r > 0 for r in calibration.ratios)
    predictor = Calibration.from_dict(calibration.to_dict()).predictor()
    assert predictor.samples == 10
    direct = calibration.predictor()
    screen = BudgetScreen(trained_tiny, SHAPE, BudgetLimit("latency_ms", 1.0), predictor, baseline_ms=2.0)
    for policy in (space.uniform(0.0), space.uniform(0.8)):
        table = layer_table(apply_policy(trained_tiny, policy, SHAPE).model, SHAPE)
        assert predictor.predict(table) == direct.predict(table)
        assert screen.predict(policy) == pytest.approx(2.0 * direct.predict(table))  # relative to 2 ms
    with pytest.raises(ValueError, match="needs a predictor"):
        BudgetScreen(trained_tiny, SHAPE, BudgetLimit("latency_ms", 1.0))


def test_calibration_times_policies_in_batches_with_the_base_model_until_their_ratios_are_tight(
    trained_tiny, space, monkeypatch
):
    import prunepilot.search.calibration as calibration_module
    from prunepilot.errors import UsageError

    calls = []
    # Per call: the base model's latency, then each pruned model's. The first batch's ratios agree
    # from the start; the second batch's first model is noisy until its fourth timing.
    answers = iter([
        [2.0, 1.0, 0.6], [2.0, 1.0, 0.6],                            # batch 1: tight after 2
        [2.0, 0.4], [2.0, 1.2], [2.0, 0.8], [2.0, 0.8],              # batch 2: noisy, 4 timings
    ])  # fmt: skip

    def fake_time_models(models, *args, **kwargs):
        calls.append(len(models))
        return next(answers)

    monkeypatch.setattr(calibration_module, "time_models", fake_time_models)
    policies = [space.uniform(0.2), space.uniform(0.6), space.uniform(0.4)]
    settings = LatencySettings(batch_size=8, warmup=1, repeats=3)
    calibration = calibrate_latency(trained_tiny, SHAPE, policies, settings, timings=(2, 4), batch=2)
    assert calls == [3, 3, 2, 2, 2, 2]  # the base model and up to two pruned models per measurement
    assert calibration.ratios == pytest.approx([0.5, 0.3, 0.4])  # the mean of each model's ratios
    assert len(calibration.tables) == 3
    message = "'timings\\[1\\]' parameter of calibrate_latency must be an integer >= 2"
    with pytest.raises(UsageError, match=message):
        calibrate_latency(trained_tiny, SHAPE, policies, settings, timings=(2, 1))
    with pytest.raises(UsageError, match="'batch' parameter of calibrate_latency must be an integer >= 1"):
        calibrate_latency(trained_tiny, SHAPE, policies, settings, batch=0)


def test_measured_trials_refit_and_correct_a_latency_predictor_that_is_off_as_a_whole(trained_tiny, space):
    from prunepilot.search.screen import MIN_OBSERVED

    calibration = _synthetic_calibration(trained_tiny, space)
    # Calibrated in the driver; trials measure half of what it predicts (another machine, say).
    screen = BudgetScreen(
        trained_tiny, SHAPE, BudgetLimit("latency_ms", 1.0), calibration.predictor(), baseline_ms=2.0
    )
    trained = [space.uniform(round(0.1 * i, 1)) for i in range(9)]
    held_out = space.uniform(0.45)
    before = {p.to_json(): screen.predict(p) for p in [*trained, held_out]}
    screen.budget = BudgetLimit(
        "latency_ms", 0.6 * before[held_out.to_json()]
    )  # over as predicted, within as measured
    assert not screen.fits(held_out)
    for count, policy in enumerate(trained[: MIN_OBSERVED - 1], start=1):
        screen.observe(policy, before[policy.to_json()] / 2)
        assert screen.predictor.samples == 10 + count  # refit on each measured trial
    assert screen.correction == 1.0  # too few to judge
    for policy in trained[MIN_OBSERVED - 1 :]:
        screen.observe(policy, before[policy.to_json()] / 2)
    assert screen.correction < 1.0
    # Corrected towards what trials measure (half). The correction is the error the predictor made
    # before the refit learnt from those trials, so it may overshoot, by what the refit learnt.
    truth = before[held_out.to_json()] / 2
    assert 0.75 * truth < screen.predict(held_out) < 1.15 * truth
    assert screen.fits(held_out)
    # Exact metrics are never corrected.
    flops = BudgetScreen(trained_tiny, SHAPE, BudgetLimit("flops", 1e9))
    for policy in trained:
        flops.observe(policy, 1.0)
    assert flops.correction == 1.0 and flops.predict(trained[0]) == _flops(trained_tiny, trained[0])


def test_refitting_on_trials_learns_what_calibration_missed(trained_tiny, space):
    calibration = _synthetic_calibration(trained_tiny, space)
    screen = BudgetScreen(
        trained_tiny, SHAPE, BudgetLimit("latency_ms", 1.0), calibration.predictor(), baseline_ms=2.0
    )
    lopsided = Policy({g.name: GroupSetting(0.8 if i == 0 else 0.0) for i, g in enumerate(space.groups)})
    measured = 1.5 * screen.predict(lopsided)  # a kind of policy the calibration predicts badly
    for _ in range(3):
        screen.observe(lopsided, measured)
    uncorrected = screen.predict(lopsided) / screen.correction
    assert abs(uncorrected - measured) < 0.5 * abs(measured / 1.5 - measured)
    assert screen.predictor.samples == 13 and calibration.predictor().samples == 10


def test_the_correction_is_set_by_the_latest_trials_predicted_near_the_budget(trained_tiny, space):
    from prunepilot.search.screen import NEAREST_OBSERVED

    calibration = _synthetic_calibration(trained_tiny, space)
    screen = BudgetScreen(
        trained_tiny, SHAPE, BudgetLimit("latency_ms", 1.0), calibration.predictor(), baseline_ms=2.0
    )
    policies = sorted((space.uniform(round(0.05 * i, 2)) for i in range(17)), key=screen.predict)
    near, far = policies[:NEAREST_OBSERVED], policies[NEAREST_OBSERVED:]

    def measure(policy: Policy, share: float) -> None:  # ``share`` of its prediction, uncorrected
        screen.observe(policy, share * screen.predict(policy) / screen.correction)

    for policy in far:  # lightly pruned models measure half their prediction
        measure(policy, 0.5)
    assert screen.correction == pytest.approx(0.5)
    # A tight budget, far below those models: the most pruned policy's prediction, as refit.
    screen.budget = BudgetLimit("latency_ms", screen.predict(policies[0]) / screen.correction)
    for policy in near:  # near the budget the predictor is right: their ratio sets the correction
        measure(policy, 1.0)
    assert screen.correction == pytest.approx(1.0)
    tightest = near[0]  # predicted at the budget
    for _ in range(NEAREST_OBSERVED):  # later trials near the budget measure 20% over their prediction
        measure(tightest, 1.2)
    assert screen.correction == pytest.approx(1.2)  # the latest near the budget count


def test_one_trial_in_eight_far_over_its_prediction_raises_the_correction(trained_tiny, space):
    from prunepilot.search.screen import FEASIBLE_QUANTILE, NEAREST_OBSERVED

    screen = BudgetScreen(
        trained_tiny,
        SHAPE,
        BudgetLimit("latency_ms", 1.0),
        _synthetic_calibration(trained_tiny, space).predictor(),
        2.0,
    )
    policy = space.uniform(0.5)
    screen.budget = BudgetLimit("latency_ms", screen.predict(policy))
    shares = [1.0] * (NEAREST_OBSERVED - 1) + [1.5]
    for share in shares:
        screen.observe(policy, share * screen.predict(policy) / screen.correction)
    # A high quantile of the errors, not their middle: few policies let through measure over budget.
    assert screen.correction == pytest.approx(float(np.quantile(shares, FEASIBLE_QUANTILE)))
    assert screen.correction > 1.1


def test_a_space_searching_the_precision_calibrates_each_precision_its_own_predictor(trained_tiny):
    space = SearchSpace(tuple(discover_groups(trained_tiny, SHAPE)), quantize="search")
    policies = calibration_policies(space, 16, seed=0)
    assert [p.int8 for p in policies] == [False, True] * 8
    fp32 = _synthetic_calibration(trained_tiny, space)
    tables, ratios, base = fp32.tables * 2, fp32.ratios + [r / 3 for r in fp32.ratios], fp32.base
    calibration = Calibration(tables, ratios, base, [False] * 10 + [True] * 10)
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    assert Calibration.from_dict({**fp32.to_dict(), "int8": []}).precisions == [False] * 10  # older runs
    table = {k: tuple(v) for k, v in tables[3].items()}
    fast, slow = calibration.predictor(int8=True).predict(table), calibration.predictor().predict(table)
    assert fast == pytest.approx(slow / 3, rel=0.1)


def test_a_latency_calibration_times_int8_policies_in_onnxruntime(trained_tiny):
    from prunepilot.runtimes import get_runtime

    space = SearchSpace(tuple(discover_groups(trained_tiny, SHAPE)), quantize="int8")
    settings = LatencySettings(batch_size=8, warmup=1, repeats=3)
    policies = calibration_policies(space, 2, seed=0)
    runtime = get_runtime("onnxruntime")
    calibration = calibrate_latency(trained_tiny, SHAPE, policies, settings, runtime=runtime)
    assert calibration.int8 == [True, True] and all(r > 0 for r in calibration.ratios)


def test_a_size_screen_counts_int8_weights_as_stored(trained_tiny, digits):
    from prunepilot.adapters import samples
    from prunepilot.runtimes import get_runtime

    space = SearchSpace(tuple(discover_groups(trained_tiny, SHAPE)), quantize="search")
    screen = BudgetScreen(trained_tiny, SHAPE, BudgetLimit("size_bytes", 1e9), runtime="onnxruntime")
    fp32, int8 = space.uniform(0.2, int8=False), space.uniform(0.2, int8=True)
    assert screen.predict(int8) < screen.predict(fp32)
    pruned = apply_policy(trained_tiny, int8, SHAPE).model
    runtime = get_runtime("onnxruntime")
    trained = runtime.deploy(pruned, samples(digits[1], 8), 1, True, samples(digits[0], 256))
    # Ranges change values, not sizes (but for a few bytes of varint-encoded zero points).
    assert screen.predict(int8) == pytest.approx(trained.size_bytes, rel=1e-3)
