"""The gradual schedule: the cubic ramp, the steps, and a model equal in shape to one-shot's whose
merged plan re-creates it from the base model."""

from dataclasses import replace

import pytest
import torch

from prunepilot.errors import UsageError
from prunepilot.families.gradual import agp_ramp, prune_gradually, schedule_record, stage_steps
from prunepilot.policies import Policy, apply_plan, discover_blocks, discover_groups
from prunepilot.policies.policy import GroupSetting
from prunepilot.trial import TrialSettings, prune_and_train

SHAPE = (1, 8, 8)


def test_the_ramp_is_cubic_and_ends_at_the_policy():
    assert [round(0.6 * r, 3) for r in agp_ramp(4)] == [0.347, 0.525, 0.591, 0.6]
    assert agp_ramp(2)[-1] == 1.0


@pytest.mark.parametrize(("total", "stages"), [(600, 4), (9, 2), (17, 5), (8, 4)])
def test_the_stages_share_the_one_shot_steps_and_the_last_gets_at_least_half(total, stages):
    steps = stage_steps(total, stages)
    assert len(steps) == stages and sum(steps) == total and steps[-1] >= total / 2


def test_the_schedule_is_checked_and_recorded():
    with pytest.raises(UsageError, match="'schedule' parameter of TrialSettings must be one of"):
        TrialSettings(schedule="cyclic")
    with pytest.raises(UsageError, match="'schedule_stages' parameter of TrialSettings"):
        TrialSettings(schedule_stages=1)
    assert TrialSettings().schedule == "oneshot"
    record = schedule_record(TrialSettings(schedule="gradual", finetune_steps=40, schedule_stages=4))
    assert record["steps"] == [5, 5, 5, 25] and record["ramp"][-1] == 1.0


def _policy(model, round_to: int, blocks: tuple[str, ...]) -> Policy:
    groups = discover_groups(model, SHAPE)
    ratios = (0.6, 0.3, 0.75, 0.5)
    criteria = ("l1", "taylor", "fpgm", "l2")
    return Policy(
        {g.name: GroupSetting(ratios[i % 4], criteria[i % 4]) for i, g in enumerate(groups)},
        round_to=round_to,
        removed_blocks=blocks,
    )


@pytest.mark.parametrize(("round_to", "with_block"), [(1, False), (4, True)])
def test_gradual_pruning_lands_on_one_shot_architecture_and_its_plan_recreates_it(
    trained_tiny, digits, fast_settings, round_to, with_block
):
    blocks = tuple(discover_blocks(trained_tiny, SHAPE)[:1]) if with_block else ()
    policy = _policy(trained_tiny, round_to, blocks)
    settings = replace(fast_settings, finetune_steps=16, schedule_stages=4)
    oneshot, _ = prune_and_train(trained_tiny, digits[0], SHAPE, policy, settings)
    timings = {}
    gradual, plan = prune_gradually(
        trained_tiny, digits[0], SHAPE, policy, replace(settings, schedule="gradual"), timings
    )
    shapes = {k: tuple(v.shape) for k, v in gradual.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in oneshot.state_dict().items()}
    assert plan.removed_blocks == blocks and set(timings) == {"apply", "bn_recalibration", "fine_tune"}
    rebuilt = apply_plan(trained_tiny, plan, SHAPE)
    rebuilt.load_state_dict(gradual.state_dict())
    inputs = torch.randn(4, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(rebuilt(inputs), gradual.eval()(inputs), atol=1e-5)
    assert not torch.equal(plan_weights(gradual), plan_weights(oneshot))  # ranked anew, trained anew


def plan_weights(model) -> torch.Tensor:
    return next(model.parameters()).detach().flatten()


def test_a_gradual_schedule_cuts_input_features_and_zeroes_weights_at_its_last_stage():
    from prunepilot.families.features import KeptFeatures
    from prunepilot.tasks.tabular import tabular_mlp

    torch.manual_seed(0)
    model, shape = tabular_mlp(), (30,)
    features = torch.randn(256, 30)
    train = torch.utils.data.TensorDataset(features, (features[:, 0] > 0).long())
    groups = [g.name for g in discover_groups(model, shape)]
    policy = Policy(Policy.uniform(groups, 0.5).groups, sparsity=0.5, input_features=(1, 4, 9, 16, 25))
    settings = TrialSettings(finetune_steps=8, batch_size=32, bn_batches=0, schedule="gradual")
    gradual, plan = prune_gradually(model, train, shape, policy, settings, {})
    oneshot, _ = prune_and_train(model, train, shape, policy, replace(settings, schedule="oneshot"))
    assert isinstance(gradual, KeptFeatures) and plan.input_features == policy.input_features
    assert {k: v.shape for k, v in gradual.state_dict().items()} == {
        k: v.shape for k, v in oneshot.state_dict().items()
    }
    assert not any(k.endswith("_mask") for k in gradual.state_dict())
    assert int((gradual.inner.body[0].weight == 0).sum()) > 0  # the sparsity, folded
