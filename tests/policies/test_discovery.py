"""Discovery under bounds: groups, blocks, and the groups left whole with the reason."""

from __future__ import annotations

import pytest
import torch

from prunepilot.bounds import bounded
from prunepilot.errors import UsageError
from prunepilot.policies import DiscoveryBounds, discover
from tests import zoo
from tests.helpers import assert_one_line_error, run_cli

SHAPE = (1, 8, 8)


def test_a_step_past_its_memory_bound_is_one_error_and_the_bound_is_lifted_after():
    expected, bound = r"Building needed more than its memory bound of 0\.2 GiB", 256 * 2**20
    with pytest.raises(UsageError, match=expected) as caught, bounded("Building", None, bound, "discovery"):
        torch.empty(2**30, dtype=torch.float32).fill_(0)  # 4 GiB
    assert caught.value.field == "discovery_memory_gb"
    assert torch.empty(2**28, dtype=torch.uint8).fill_(1).sum() == 2**28  # 256 MiB, no bound any more


def test_a_model_whose_tracing_takes_too_much_memory_is_refused_naming_the_step():
    with pytest.raises(UsageError, match=r"^Tracing the model's dependency graph needed more than"):
        discover(zoo.hungry_net(), SHAPE, DiscoveryBounds(memory_gb=0.25))


def test_a_model_whose_tracing_takes_too_long_is_refused_in_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "search", "--model", "tests.zoo:slow_net", "--dry-run", "--out", tmp_path,
                           "--discovery-timeout", "0.2", "--quiet")  # fmt: skip
    assert code == 2
    # The step that meets the bound depends on how many passes each makes: the line names it.
    assert_one_line_error(err, "0.2 s of CPU time", "raise --discovery-timeout")


def test_a_group_whose_pruning_breaks_the_model_is_left_whole_and_listed(capsys, tmp_path):
    found = discover(zoo.fixed_width_net(), SHAPE)
    assert [g.name for g in found.groups] == ["fc1"]
    assert "pruning it breaks the model (RuntimeError" in found.left_whole["fc2"]
    code, out, err = run_cli(capsys, "search", "--model", "tests.zoo:fixed_width_net", "--dry-run",
                             "--out", tmp_path, "--quiet")  # fmt: skip
    assert code == 0, err
    assert "Left whole (never pruned):" in out and "  fc2: pruning it breaks the model" in out


def test_bounds_are_checked_like_every_parameter():
    with pytest.raises(UsageError, match=r"The 'seconds' parameter of DiscoveryBounds must be a number > 0"):
        DiscoveryBounds(seconds=0)
    with pytest.raises(UsageError, match=r"'memory_gb' parameter of DiscoveryBounds .* Got -1 instead"):
        DiscoveryBounds(memory_gb=-1)


def test_a_block_is_kept_when_removing_every_removable_block_leaves_a_model_that_cannot_be_pruned():
    found = discover(zoo.fused_qkv_vit(), (1, 16, 16))
    assert found.blocks == ("blocks.0",)  # every policy of the space traces
    kept = found.left_whole["blocks.1"]
    assert kept.startswith("kept as a block (its channels are still searched): removing it with every other")
    assert any(g.name.endswith("mlp.0") for g in found.groups)


def test_the_time_bound_counts_cpu_time_so_a_busy_step_stops_and_a_quick_one_passes():
    from prunepilot.bounds import bounded

    with pytest.raises(UsageError, match=r"took more than its bound of 0.2 s of CPU time"), bounded(
        "Spinning", 0.2, None, "discovery"
    ):
        while True:  # work, not waiting
            sum(range(10_000))
    with bounded("Quick", 0.2, None, "discovery"):
        sum(range(1000))
