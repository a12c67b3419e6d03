"""Rules between settings: one error a field, blaming the field a user would change, and silent
while a field the rule reads is wrong (that field's own error says what is wrong)."""

from __future__ import annotations

from dataclasses import dataclass

from prunepilot.settings import Number, field_problems, setting
from prunepilot.settings.rules import Rule, rule_problems
from prunepilot.spec import JobSpec


@dataclass(frozen=True)
class Bounds:
    low: float = setting(0.0, "low", key="low", check=Number(0, 1))
    high: float = setting(1.0, "high", key="high", check=Number(0, 1))


RULES = (Rule("low", lambda b: b.low <= b.high, lambda b: f"at most high={b.high}", reads=("high",)),)


def problems(bounds: Bounds) -> list[str]:
    found = field_problems(bounds)
    return [str(p) for p in found + rule_problems(bounds, RULES, {p.field for p in found})]


def test_a_broken_rule_blames_its_field_with_the_standard_line():
    assert problems(Bounds(low=0.8, high=0.5)) == [
        "The 'low' parameter of JobSpec must be at most high=0.5. Got 0.8 instead."
    ]
    assert problems(Bounds(low=0.2, high=0.5)) == []


def test_a_rule_is_silent_while_a_field_it_reads_or_blames_is_wrong():
    only = "The 'high' parameter of JobSpec must be in [0, 1]. Got 5.0 instead."
    assert problems(Bounds(low=0.8, high=5.0)) == [only]
    assert len(problems(Bounds(low=-1.0, high=0.5))) == 1  # its own field's error only


def test_the_job_reports_only_the_wrong_field_not_the_rules_that_read_it():
    gradual = JobSpec(budget="30ms", schedule="gradual", schedule_stages=50, final_steps=60)
    lines = [str(p) for p in gradual.problems()]
    assert len(lines) == 1 and "'schedule_stages'" in lines[0]
    gradual = JobSpec(budget="30ms", schedule="gradual", schedule_stages=4, final_steps=6)
    assert [str(p) for p in gradual.problems()] == [
        "The 'final_steps' parameter of JobSpec must be at least 2 x schedule_stages (8) with schedule "
        "gradual. Got 6 instead."
    ]


def test_python_values_the_old_checks_took_are_still_taken():
    import numpy as np

    job = JobSpec(budget="2x", metric=lambda outputs, labels: 0.0, loss=lambda model, batch: 0.0, exclude=[],
                  lr=np.float32(1e-3))  # fmt: skip
    assert job.problems() == []
