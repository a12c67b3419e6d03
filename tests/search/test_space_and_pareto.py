from dataclasses import replace

import optuna
import pytest

from prunepilot import Policy, discover_groups
from prunepilot.errors import UsageError
from prunepilot.policies import GroupInfo, GroupSetting
from prunepilot.search import SearchSpace, pareto_indices

SHAPE = (1, 8, 8)


def _group(name, bn=True):
    return GroupInfo(name, 16, (name,), bn, 0.5)


def test_suggested_policy_round_trips_through_trial_params():
    space = SearchSpace((_group("a"), _group("b", bn=False)), ratio_high=0.6)
    for policy in _sampled_round_trips(space, 20, seed=1):
        assert set(policy.groups) == {"a", "b"}
        assert all(0 <= s.ratio <= 0.6 for s in policy.groups.values())
        assert policy.groups["b"].criterion != "bn_scale"


def _sampled_round_trips(space: SearchSpace, trials: int, seed: int) -> list[Policy]:
    """Policies a random sampler proposes; each re-created exactly from its trial parameters."""
    sampler = optuna.samplers.RandomSampler(seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    policies = []
    for _ in range(trials):
        trial = study.ask()
        policy = space.suggest(trial)
        assert space.suggest(optuna.trial.FixedTrial(space.params_of(policy))) == policy
        policies.append(policy)
        study.tell(trial, [0.5, 1.0])
    return policies


def test_blocks_are_removed_or_kept_by_the_sampler_and_round_trip():
    space = SearchSpace((_group("a"),), blocks=("layer1", "layer3"))
    seen = {policy.removed_blocks for policy in _sampled_round_trips(space, 16, seed=2)}
    assert seen == {(), ("layer1",), ("layer3",), ("layer1", "layer3")}
    assert space.uniform(0.5).removed_blocks == ()  # the hand-made recipe keeps every block
    # A policy is kept to the space: a block the space may not remove stays.
    assert space.clamp(Policy({}, removed_blocks=("layer3", "other"))).removed_blocks == ("layer3",)
    assert "removable blocks: layer1, layer3" in space.describe()


def test_params_of_snaps_ratios_onto_the_grid():
    space = SearchSpace((_group("a"),), ratio_step=0.1)
    params = space.params_of(Policy({"a": GroupSetting(0.33, "l2")}))
    assert params == {"a:ratio": pytest.approx(0.3), "a:criterion": "l2"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ratio_high": 0.99}, "ratio_high"),
        ({"ratio_low": 0.9}, "ratio_low"),
        ({"ratio_step": 0}, "ratio_step"),
    ],
)
def test_space_checks_its_inputs(kwargs, field):
    with pytest.raises(UsageError, match=f"'{field}' parameter of SearchSpace"):
        SearchSpace((_group("a"),), **kwargs)


def test_unknown_criterion_in_space_is_refused():
    with pytest.raises(ValueError, match="Unknown criterion"):
        SearchSpace((_group("a"),), criteria=("l1", "nope"))


def test_pareto_indices_keep_only_non_dominated_points_cheapest_first():
    points = [(0.90, 5.0), (0.95, 6.0), (0.80, 5.5), (0.95, 7.0), (0.70, 1.0), (0.90, 5.0)]
    front = pareto_indices(points)
    assert front == [4, 0, 5, 1]


def test_space_from_real_groups(trained_tiny):
    groups = tuple(discover_groups(trained_tiny, SHAPE))
    space = SearchSpace(groups)
    uniform = space.uniform(0.5)
    assert set(uniform.groups) == {g.name for g in groups}
    assert any("criteria" in line for line in space.describe())


def test_round_to_can_be_part_of_the_space():
    space = SearchSpace((_group("a"),), round_to_choices=(1, 8, 16))
    assert {policy.round_to for policy in _sampled_round_trips(space, 30, seed=3)} == {1, 8, 16}
    assert any("one of [1, 8, 16]" in line for line in space.describe())
    with pytest.raises(UsageError, match="'round_to' parameter of SearchSpace"):
        SearchSpace((_group("a"),), round_to_choices=(0,))


def test_warm_start_policies_use_a_rounding_from_the_space():
    space = SearchSpace((_group("a"),), round_to_choices=(8, 16))
    policy = space.uniform(0.5)
    assert policy.round_to == 8
    assert space.params_of(policy)["round_to"] == 8


def test_hypervolume_is_the_area_dominated_within_the_reference():
    from prunepilot.search.pareto import hypervolume

    reference = (0.5, 1.0)
    # front: (0.7 @ 0.2), (0.9 @ 0.6); (0.6 @ 0.8) is dominated, (0.4 @ 0.1) below the floor.
    points = [(0.7, 0.2), (0.9, 0.6), (0.6, 0.8), (0.4, 0.1), (0.95, 1.2)]
    expected = (0.6 - 0.2) * (0.7 - 0.5) + (1.0 - 0.6) * (0.9 - 0.5)
    assert abs(hypervolume(points, reference) - expected) < 1e-12
    assert hypervolume([], reference) == 0.0
    assert hypervolume(points + [(0.9, 0.3)], reference) > hypervolume(points, reference)


def test_clamp_keeps_a_policy_within_the_space():
    space = SearchSpace(
        (_group("a"), _group("b")),
        ratio_low=0.2,
        ratio_high=0.6,
        criteria=("l1", "l2"),
        round_to_choices=(1, 8),
    )
    outside = Policy(
        {"a": GroupSetting(0.9, "taylor"), "gone": GroupSetting(0.5, "l1")},  # "b" is not named
        round_to=16,
    )
    clamped = space.clamp(outside)
    assert set(clamped.groups) == {"a", "b"}  # a group outside the space is dropped
    assert clamped.groups["a"] == GroupSetting(0.6, "l1")  # the highest ratio, an allowed criterion
    assert clamped.groups["b"].ratio == pytest.approx(0.2)  # not named: the lowest ratio
    assert clamped.round_to == 1
    inside = Policy({"a": GroupSetting(0.3, "l2"), "b": GroupSetting(0.45, "l1")}, round_to=8)
    assert space.clamp(inside) == inside


def test_a_uniform_sweep_spreads_ratios_over_the_whole_range():
    space = SearchSpace((_group("a"), _group("b")), ratio_high=0.8, ratio_step=0.05)
    sweep = space.uniform_sweep(4)
    assert [p.groups["a"].ratio for p in sweep] == [0.2, 0.4, 0.6, 0.8]
    assert all(p == space.uniform(p.groups["a"].ratio) for p in sweep)
    # More policies than grid steps: one per step, none twice.
    coarse = SearchSpace((_group("a"),), ratio_high=0.2, ratio_step=0.1).uniform_sweep(5)
    assert [p.groups["a"].ratio for p in coarse] == [0.1, 0.2]
    with pytest.raises(UsageError, match="'count' parameter of SearchSpace.uniform_sweep must be at least 1"):
        space.uniform_sweep(0)


def test_the_trade_off_sweep_alternates_the_whole_model_and_the_one_without_its_blocks():
    space = SearchSpace((_group("a"), _group("b")), blocks=("layer1",), ratio_high=0.8, ratio_step=0.05)
    sweep = space.trade_off_sweep(5)
    assert [(p.groups["a"].ratio, p.removed_blocks) for p in sweep] == [
        (0.25, ()), (0.4, ("layer1",)), (0.55, ()), (0.8, ("layer1",)), (0.8, ()),
    ]  # fmt: skip
    assert all(
        p == replace(space.uniform(p.groups["a"].ratio), removed_blocks=p.removed_blocks) for p in sweep
    )
    no_blocks = SearchSpace((_group("a"),), ratio_high=0.8, ratio_step=0.05)
    assert no_blocks.trade_off_sweep(4) == no_blocks.uniform_sweep(4)


def _two_groups(**kwargs) -> SearchSpace:
    groups = tuple(GroupInfo(n, 8, (n,), False, 0.5) for n in ("a", "b"))
    return SearchSpace(groups, **kwargs)


def test_a_space_that_searches_the_precision_proposes_both_and_enqueues_either():
    space = _two_groups(quantize="search")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    proposed = {space.suggest(study.ask()).int8 for _ in range(12)}
    assert proposed == {False, True}
    int8 = space.uniform(0.5, int8=True)
    assert space.params_of(int8)["int8"] is True
    assert space.clamp(int8) == int8
    assert "precision: fp32 or int8, per policy" in space.describe()


def test_a_fixed_precision_space_keeps_every_policy_in_its_precision():
    int8_space, fp32_space = _two_groups(quantize="int8"), _two_groups()
    study = optuna.create_study()
    assert int8_space.suggest(study.ask()).int8 and int8_space.uniform(0.3).int8
    assert "int8" not in int8_space.params_of(int8_space.uniform(0.3))  # not a parameter: fixed
    assert not fp32_space.within_blocks(int8_space.uniform(0.3)).int8
    assert int8_space.within_blocks(fp32_space.uniform(0.3)).int8
    with pytest.raises(UsageError, match="'quantize' parameter of SearchSpace must be one of"):
        _two_groups(quantize="fp16")
