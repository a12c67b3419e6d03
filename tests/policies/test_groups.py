import pytest
import torch

from prunepilot import UsageError, discover_groups
from tests import zoo

SHAPE = (1, 8, 8)


def test_groups_are_named_by_root_module_and_stable(trained_tiny):
    first = discover_groups(trained_tiny, SHAPE)
    second = discover_groups(trained_tiny, SHAPE)
    assert [g.name for g in first] == [g.name for g in second]
    names = {g.name for g in first}
    assert names == {"stem.0", "layer1.conv1", "layer2.conv1", "layer2.shortcut.0", "layer3.conv1"}
    by_name = {g.name: g for g in first}
    # The residual stream of stage 1: stem and the block's last conv shrink together.
    assert set(by_name["stem.0"].modules) == {"stem.0", "layer1.conv2"}
    assert by_name["layer2.conv1"].channels == 16
    assert all(g.has_batchnorm for g in first)


def test_the_classifier_is_not_a_group(trained_tiny):
    groups = discover_groups(trained_tiny, SHAPE)
    assert all("fc" not in g.modules for g in groups)


def test_flops_shares_are_fractions_that_sum_below_one(trained_tiny):
    shares = [g.flops_share for g in discover_groups(trained_tiny, SHAPE)]
    assert all(0 < s < 1 for s in shares)
    assert 0.8 < sum(shares) <= 1.0 + 1e-9


def test_discovery_does_not_change_the_model(trained_tiny):
    before = [p.clone() for p in trained_tiny.parameters()]
    stats = trained_tiny.layer1.bn1.running_mean.clone()
    discover_groups(trained_tiny, SHAPE)
    assert all((a == b).all() for a, b in zip(before, trained_tiny.parameters()))
    assert (stats == trained_tiny.layer1.bn1.running_mean).all()
    assert not trained_tiny.training


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 2)])
def test_a_wrong_input_shape_is_reported(trained_tiny, shape):
    from prunepilot import UsageError

    with pytest.raises(UsageError, match="cannot be traced for pruning: it fails on an input of shape"):
        discover_groups(trained_tiny, shape)


def test_a_tracing_failure_names_the_operation_and_the_module_before_it():
    from prunepilot.policies.blocks import remove_blocks
    from prunepilot.policies.groups import build_graph

    emptied = zoo.fused_qkv_vit().eval()
    remove_blocks(emptied, ["blocks.0", "blocks.1"])  # Torch-Pruning cannot trace what is left
    expected = "cannot follow its channels through ViewBackward0 after 'patch_embed'"
    with pytest.raises(UsageError, match=expected) as caught:
        build_graph(emptied, torch.randn(2, 1, 16, 16))
    assert "The model runs" in str(caught.value) and "must run forward" not in str(caught.value)
