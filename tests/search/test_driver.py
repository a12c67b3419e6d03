"""The driver: ask/tell, failures recorded, resume without recomputation."""

from dataclasses import replace

from prunepilot import Policy, TrialResult, discover_groups
from prunepilot.budget import BudgetLimit
from prunepilot.search import SearchSpace, open_study, recover_interrupted, run_search, warm_start
from prunepilot.search.driver import finished_count
from prunepilot.search.executors import InProcessExecutor
from prunepilot.tasks import TaskData

SHAPE = (1, 8, 8)


class CountingTrial:
    """A stand-in trial function: cost = mean ratio, records every policy it ran."""

    def __init__(self, fail_on: int | None = None):
        self.policies: list[Policy] = []
        self.fail_on = fail_on

    def __call__(self, model, data, policy, settings, **where):
        self.policies.append(policy)
        if self.fail_on is not None and len(self.policies) == self.fail_on:
            raise RuntimeError("worker ran out of memory")
        mean = sum(s.ratio for s in policy.groups.values()) / len(policy.groups)
        return TrialResult(1.0 - mean / 2, int(1000 * (1 - mean)), 10, 100, 10.0 * (1 - mean), {})


def _setup(tmp_path, trained_tiny, digits):
    groups = tuple(discover_groups(trained_tiny, SHAPE))
    space = SearchSpace(groups)
    data = TaskData(digits[0], digits[1], SHAPE)
    return space, data


def test_trials_are_told_with_constraint_and_warm_starts_run_first(
    tmp_path, trained_tiny, digits, fast_settings
):
    space, data = _setup(tmp_path, trained_tiny, digits)
    study = open_study(tmp_path, seed=0)
    warm_start(study, space, [space.uniform(0.5)])
    trial_fn = CountingTrial()
    executor = InProcessExecutor(trained_tiny, data, fast_settings, trial_fn)
    ran = run_search(study, executor, space, BudgetLimit("latency_ms", 6.0), 6, progress=False)
    assert ran == 6 and len(trial_fn.policies) == 6
    assert trial_fn.policies[0] == space.uniform(0.5)
    first = study.trials[0]
    assert first.values == [0.75, 5.0]
    assert first.constraints["budget"] < 0  # 5.0 ms is within 6.0 ms
    assert Policy.from_dict(first.user_attrs["policy"]) == space.uniform(0.5)


def test_a_trial_that_raises_ends_fail_with_its_error_and_the_search_goes_on(
    tmp_path, trained_tiny, digits, fast_settings
):
    space, data = _setup(tmp_path, trained_tiny, digits)
    study = open_study(tmp_path, seed=0)
    executor = InProcessExecutor(trained_tiny, data, fast_settings, CountingTrial(fail_on=2))
    run_search(study, executor, space, BudgetLimit("flops", 500), 4, progress=False)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert "worker ran out of memory" in study.trials[1].user_attrs["error"]


def test_resume_never_recomputes_a_completed_trial(tmp_path, trained_tiny, digits, fast_settings):
    space, data = _setup(tmp_path, trained_tiny, digits)
    objective = BudgetLimit("latency_ms", 6.0)
    first = CountingTrial()
    executor = InProcessExecutor(trained_tiny, data, fast_settings, first)
    run_search(open_study(tmp_path, 0), executor, space, objective, 3, progress=False)
    # A driver dies mid-trial: the trial it asked for stays RUNNING in the study.
    dead = open_study(tmp_path, 0)
    orphan = dead.ask()
    orphan_policy = space.suggest(orphan)
    orphan.set_user_attr("policy", orphan_policy.to_dict())  # the driver records it before running

    study = open_study(tmp_path, 0)
    assert recover_interrupted(study, space) == 1
    second = CountingTrial()
    executor = InProcessExecutor(trained_tiny, data, fast_settings, second)
    run_search(study, executor, space, objective, 5, progress=False)

    assert len(first.policies) == 3
    assert len(second.policies) == 2  # only the missing trials ran
    assert second.policies[0] == orphan_policy  # the interrupted trial's policy is re-run first
    assert not any(p in first.policies for p in second.policies[1:])
    assert study.trials[orphan.number].state.name == "FAIL"
    assert "interrupted" in study.trials[orphan.number].user_attrs["error"]
    assert finished_count(study) == 5
    assert not [t for t in study.trials if t.state.name == "RUNNING"]


def test_an_enqueued_trial_killed_before_its_params_were_recorded_is_requeued_whole(
    tmp_path, trained_tiny, digits, fast_settings
):
    space, data = _setup(tmp_path, trained_tiny, digits)
    objective = BudgetLimit("latency_ms", 6.0)
    study = open_study(tmp_path, 0)
    policy = space.uniform(0.5)
    warm_start(study, space, [policy])
    # A driver dies right after popping the enqueued trial: its policy is known, no params yet.
    dead = open_study(tmp_path, 0)
    orphan = dead.ask()
    assert orphan.user_attrs["policy"] == policy.to_dict() and not dead.trials[orphan.number].params

    study = open_study(tmp_path, 0)
    assert recover_interrupted(study, space) == 1
    ran = CountingTrial()
    executor = InProcessExecutor(trained_tiny, data, fast_settings, ran)
    run_search(study, executor, space, objective, 1, progress=False)

    rerun = study.trials[orphan.number + 1]
    assert ran.policies == [policy]
    assert rerun.state.name == "COMPLETE"
    assert rerun.params == space.params_of(policy)  # the params the sampler learns from match the policy


def test_ctrl_c_mid_trial_leaves_no_trial_running_and_requeues_it(
    tmp_path, trained_tiny, digits, fast_settings
):
    import pytest

    space, data = _setup(tmp_path, trained_tiny, digits)

    class StopOnSecond(CountingTrial):
        def __call__(self, model, data, policy, settings, **where):
            if len(self.policies) == 1:
                self.policies.append(policy)
                raise KeyboardInterrupt
            return super().__call__(model, data, policy, settings, **where)

    study = open_study(tmp_path, 0)
    trial_fn = StopOnSecond()
    with pytest.raises(KeyboardInterrupt):
        run_search(study, InProcessExecutor(trained_tiny, data, fast_settings, trial_fn), space,
                   BudgetLimit("latency_ms", 6.0), 4, progress=False)  # fmt: skip
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "WAITING"]  # the stopped trial is queued again
    assert "interrupted" in study.trials[1].user_attrs["error"]
    again = CountingTrial()
    run_search(study, InProcessExecutor(trained_tiny, data, fast_settings, again), space,
               BudgetLimit("latency_ms", 6.0), 4, progress=False)  # fmt: skip
    assert again.policies[0] == trial_fn.policies[1]
    assert finished_count(study) == 4


def _flops_screen(model, share: float):
    """An exact FLOPs screen at ``share`` of the model's FLOPs, and that limit."""
    import torch

    from prunepilot.evaluators import count_flops
    from prunepilot.search.screen import BudgetScreen

    limit = share * count_flops(model, torch.zeros(1, *SHAPE))
    return BudgetScreen(model, SHAPE, BudgetLimit("flops", limit)), limit


def _search_under_40_percent_flops(tmp_path, model, digits, settings, fill):
    """8 trials of a search screened against 40% of ``model``'s FLOPs: (study, screen, limit,
    trial function, trials run)."""
    space, data = _setup(tmp_path, model, digits)
    screen, limit = _flops_screen(model, 0.4)
    study = open_study(tmp_path, seed=0)
    trial_fn = CountingTrial()
    executor = InProcessExecutor(model, data, settings, trial_fn)
    objective = BudgetLimit("flops", limit)
    ran = run_search(study, executor, space, objective, 8, progress=False, screen=screen, fill=fill)
    return study, screen, limit, trial_fn, ran


def test_a_screen_keeps_policies_predicted_over_budget_from_training(
    tmp_path, trained_tiny, digits, fast_settings
):
    study, screen, limit, trial_fn, ran = _search_under_40_percent_flops(
        tmp_path, trained_tiny, digits, fast_settings, fill=False
    )
    assert ran == 8 and len(trial_fn.policies) == 8
    assert all(screen.fits(p) for p in trial_fn.policies)  # nothing over budget was trained
    screened = [t for t in study.trials if t.state.name == "PRUNED"]
    assert screened, "the sampler's first random proposals include policies over a 40% FLOPs budget"
    for trial in screened:
        assert trial.user_attrs["screened"]["predicted"] > limit
        assert trial.constraints["budget"] > 0
    assert finished_count(study) == 8


def test_with_fill_sampled_policies_are_trained_just_under_the_budget_and_enqueued_ones_as_given(
    tmp_path, trained_tiny, digits, fast_settings
):
    space, data = _setup(tmp_path, trained_tiny, digits)
    screen, limit = _flops_screen(trained_tiny, 0.6)
    study = open_study(tmp_path, seed=0)
    given = space.uniform(0.7)
    warm_start(study, space, [given])
    trial_fn = CountingTrial()
    executor = InProcessExecutor(trained_tiny, data, fast_settings, trial_fn)
    run_search(
        study, executor, space, BudgetLimit("flops", limit), 8, progress=False, screen=screen, fill=True
    )

    assert trial_fn.policies[0] == given  # enqueued: run as given, though it has slack
    trained = [t for t in study.trials if t.state.name == "COMPLETE"]
    filled = [t for t in trained if t.user_attrs.get("filled_from")]
    assert filled, "random proposals that fit a 60% FLOPs budget leave slack to fill"
    for trial in filled:
        sampled = Policy.from_dict(trial.user_attrs["filled_from"])
        policy = Policy.from_dict(trial.user_attrs["policy"])
        assert policy in trial_fn.policies and screen.fits(policy, -screen.tolerance)
        assert all(policy.groups[n].ratio <= s.ratio for n, s in sampled.groups.items())
        assert sum(s.ratio for s in policy.groups.values()) < sum(s.ratio for s in sampled.groups.values())


def test_with_fill_policies_over_budget_are_raised_to_it_rather_than_screened_out(
    tmp_path, trained_tiny, digits, fast_settings
):
    study, screen, _, trial_fn, _ = _search_under_40_percent_flops(
        tmp_path, trained_tiny, digits, fast_settings, fill=True
    )
    # Without fill, the same proposals include policies over a 40% FLOPs budget, screened out
    # (the test above); with fill, each is raised until it fits and is trained.
    assert not [t for t in study.trials if t.state.name == "PRUNED"]
    raised = [t for t in study.trials if t.user_attrs.get("raised_from")]
    assert raised
    for trial in raised:
        sampled = Policy.from_dict(trial.user_attrs["raised_from"])
        policy = Policy.from_dict(trial.user_attrs["policy"])
        assert not screen.fits(sampled) and screen.fits(policy) and policy in trial_fn.policies
        assert all(policy.groups[n].ratio >= s.ratio for n, s in sampled.groups.items())


def test_when_nothing_is_predicted_to_fit_the_search_still_trains_and_ends(
    tmp_path, trained_tiny, digits, fast_settings
):
    from prunepilot.search.driver import MAX_REJECTIONS
    from prunepilot.search.screen import BudgetScreen

    space, data = _setup(tmp_path, trained_tiny, digits)
    screen = BudgetScreen(trained_tiny, SHAPE, BudgetLimit("flops", 1.0))  # no model has 1 FLOP
    study = open_study(tmp_path, seed=0)
    trial_fn = CountingTrial()
    executor = InProcessExecutor(trained_tiny, data, fast_settings, trial_fn)
    ran = run_search(study, executor, space, BudgetLimit("flops", 1.0), 3, progress=False, screen=screen)
    assert ran == 3 and len(trial_fn.policies) == 3
    # Every trained policy is a repair after MAX_REJECTIONS rejections: all groups at the max ratio.
    assert len(study.trials) == 3 * (MAX_REJECTIONS + 1)
    for policy in trial_fn.policies:
        assert {s.ratio for s in policy.groups.values()} == {space.max_ratio}
    trained = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert all(t.user_attrs["repaired_from"] is not None for t in trained)


def test_an_enqueued_policy_removes_only_blocks_the_space_may_remove(
    tmp_path, trained_tiny, digits, fast_settings
):
    # Another night's run of a shared study left a policy removing layer3, which this run excludes.
    groups = tuple(discover_groups(trained_tiny, SHAPE))
    space, data = SearchSpace(groups, ("layer1",)), TaskData(digits[0], digits[1], SHAPE)
    study = open_study(tmp_path, seed=0)
    wider = SearchSpace(groups, ("layer1", "layer3"))
    warm_start(study, wider, [replace(space.uniform(0.5), removed_blocks=("layer1", "layer3"))])
    trial_fn = CountingTrial()
    executor = InProcessExecutor(trained_tiny, data, fast_settings, trial_fn)
    run_search(study, executor, space, BudgetLimit("latency_ms", 6.0), 1, progress=False)
    assert trial_fn.policies[0].removed_blocks == ("layer1",)
    assert study.trials[0].user_attrs["policy"]["removed_blocks"] == ["layer1"]
