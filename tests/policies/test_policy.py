import json

import pytest

from prunepilot import Policy, UsageError
from prunepilot.policies import GroupSetting, kept_channels


def test_json_round_trip_keeps_every_setting(tmp_path):
    policy = Policy(
        {"stem.0": GroupSetting(0.5, "taylor"), "layer1.conv1": GroupSetting(0.25, "fpgm")}, round_to=4
    )
    assert Policy.from_json(policy.to_json()) == policy
    path = tmp_path / "policy.json"
    path.write_text(policy.to_json())
    loaded = Policy.load(path)
    assert loaded == policy
    assert dict(loaded.groups)["stem.0"].criterion == "taylor"
    assert loaded.round_to == 4


def test_removed_blocks_round_trip_sorted_and_old_files_remove_none():
    policy = Policy({"stem.0": GroupSetting(0.5)}, removed_blocks=("layer3", "layer1", "layer3"))
    assert policy.removed_blocks == ("layer1", "layer3")
    assert policy.to_dict()["removed_blocks"] == ["layer1", "layer3"]
    assert Policy.from_json(policy.to_json()) == policy
    assert "blocks removed: layer1, layer3" in policy.describe()
    old = {"schema": "prunepilot.policy/1", "round_to": 1, "groups": {"a": {"ratio": 0.5}}}
    assert Policy.from_dict(old).removed_blocks == ()


def test_removing_a_block_the_model_cannot_lose_names_the_ones_it_can():
    with pytest.raises(UsageError, match=r"removes block\(s\) \['layer2'\].*\['layer1', 'layer3'\]"):
        Policy({}, removed_blocks=("layer2",)).check_blocks(["layer1", "layer3"])


@pytest.mark.parametrize("ratio", [1.2, -0.1, 0.96, "half", None, float("nan")])
def test_ratio_out_of_range_is_refused_with_the_standard_message(ratio):
    with pytest.raises(UsageError) as info:
        GroupSetting(ratio)
    assert "The 'ratio' parameter of GroupSetting must be" in str(info.value)
    assert "instead" in str(info.value)


def test_unknown_criterion_lists_the_accepted_ones():
    with pytest.raises(UsageError, match="fpgm"):
        GroupSetting(0.5, "magic")


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"groups": {"a": {"ratio": 2.0}}},
        {"groups": {"a": 0.5}},
        {"groups": {"a": {"ratio": 0.5, "extra": 1}}},
        {"groups": [], "round_to": 0},
        {"schema": "other/9"},
        {"colour": "red"},
        {"skip": "layer3"},
        {"skip": [3]},
    ],
)
def test_malformed_policy_data_is_refused(data):
    with pytest.raises(UsageError):
        Policy.from_json(json.dumps(data))


def test_unreadable_policy_file_names_the_path(tmp_path):
    with pytest.raises(UsageError, match="missing.json"):
        Policy.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(UsageError, match="JSON"):
        Policy.load(broken)


@pytest.mark.parametrize(
    ("channels", "ratio", "round_to", "kept"),
    [(64, 0.5, 1, 32), (64, 0.3, 1, 45), (64, 0.3, 8, 48), (10, 0.95, 1, 1), (8, 0.0, 4, 8), (6, 0.5, 4, 4)],
)
def test_kept_channels_rounds_up_and_keeps_one(channels, ratio, round_to, kept):
    assert kept_channels(channels, ratio, round_to) == kept


def test_policies_and_plans_written_before_removed_blocks_had_its_name_still_load():
    from prunepilot.policies import Plan

    old_policy = Policy.from_dict({"groups": {}, "skip": ["layer3", "layer1"]})
    assert old_policy.removed_blocks == ("layer1", "layer3")
    old_plan = Plan.from_dict({"skipped": ["layer1"], "removed": {"stem.0": [0, 2]}})
    assert old_plan == Plan({"stem.0": [0, 2]}, ("layer1",))
    assert Plan.from_dict(old_plan.to_dict()) == old_plan


def test_an_int8_policy_round_trips_and_an_fp32_one_reads_as_before():
    fp32 = Policy({"a": GroupSetting(0.5)})
    assert "int8" not in fp32.to_dict()
    int8 = Policy({"a": GroupSetting(0.5)}, int8=True)
    assert Policy.from_json(int8.to_json()) == int8
    assert "int8" in int8.describe()
    with pytest.raises(UsageError, match="'int8' field of a policy must be true or false. Got 'yes'"):
        Policy.from_dict({"groups": {}, "int8": "yes"})
