"""The job's settings of the pruning families beside channel and block pruning: distillation, the
gradual schedule and the slimming warm-up (their fields, checks, job-file keys and flags).

:class:`FamilyFields` is a base of :class:`~prunepilot.spec.JobSpec`, so each setting is a job
field like any other (``config.json``, ``--resume``, the Python API).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

from prunepilot.distill import Distillation
from prunepilot.errors import UsageError, check_integer, invalid_parameter
from prunepilot.trial import SCHEDULES

__all__ = ["FamilyFields", "add_family_arguments", "field_owner", "invalid_field"]

#: At most this many slimming warm-up steps, and schedule stages.
MAX_SLIMMING_STEPS = 100_000
MAX_STAGES = 20
#: (job-file key, field, kind, help) of each setting, for :data:`prunepilot.jobfile.KEYS`.
FAMILY_KEYS = (
    ("finetune.distill", "distill", "bool", "fine-tunes also follow the unpruned model's class scores"),
    ("finetune.distill_temperature", "distill_temperature", "float", "softens both models' scores (> 0)"),
    ("finetune.distill_weight", "distill_weight", "float", "the distillation term's weight (> 0)"),
    ("finetune.schedule", "schedule", "str", "the chosen model pruned oneshot, or gradual (in stages)"),
    ("finetune.schedule_stages", "schedule_stages", "int", "stages of the gradual schedule (2 to 20)"),
    ("slimming.steps", "slimming_steps", "int", "L1 steps on BatchNorm scales before the search"),
    ("slimming.reg", "slimming_reg", "float", "strength of the slimming warm-up's L1 penalty"),
)  # fmt: skip


def field_owner(name: str) -> str:
    """The standard message's owner, naming the field's flag (``JobSpec (--finetune-steps)``)."""
    return f"JobSpec (--{name.replace('_', '-')})"


def invalid_field(name: str, accepted: str, got: object) -> UsageError:
    """The standard error of a job field: ``The 'x' parameter of JobSpec (--x) must be ...``."""
    return invalid_parameter(name, field_owner(name), accepted, got)


@dataclass(frozen=True)
class FamilyFields:
    """The families' settings of a job.

    Attributes:
        distill: Trial and final fine-tunes add a distillation term toward the unpruned model's class
            scores (see :mod:`prunepilot.distill`).
        distill_temperature: Softens both models' class scores before they are compared.
        distill_weight: The distillation term's weight beside the task loss.
        schedule: How the chosen model is pruned: ``oneshot``, or ``gradual`` (in
            ``schedule_stages`` stages with fine-tuning between them, the same steps in all; see
            :mod:`prunepilot.gradual`). Trials are always one-shot.
        schedule_stages: Stages of the gradual schedule.
        slimming_steps: Before the search, train the base model this many steps with an L1 penalty
            on its BatchNorm scales (see :mod:`prunepilot.slimming`); the budget is still judged
            against the model as given. 0: no warm-up.
        slimming_reg: The penalty's strength.
    """

    distill: bool = False
    distill_temperature: float = 4.0
    distill_weight: float = 1.0
    schedule: str = "oneshot"
    schedule_stages: int = 4
    slimming_steps: int = 0
    slimming_reg: float = 1e-4

    def distillation(self) -> Distillation | None:
        """The fine-tunes' distillation settings; None without ``distill``."""
        return Distillation(self.distill_temperature, self.distill_weight) if self.distill else None

    def _family_checks(self) -> list[Callable[[], None]]:
        def positive(name: str) -> Callable[[], None]:
            def check() -> None:
                value = getattr(self, name)
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or not (math.isfinite(value) and value > 0)
                ):
                    raise invalid_field(name, "a finite number > 0", value)

            return check

        def flag() -> None:
            if not isinstance(self.distill, bool):
                raise invalid_field("distill", "true or false", self.distill)

        def schedule() -> None:
            if self.schedule not in SCHEDULES:
                raise invalid_field("schedule", f"one of {list(SCHEDULES)}", self.schedule)

        def stages() -> None:
            check_integer(
                field_owner("schedule_stages"), "schedule_stages", self.schedule_stages, 2, MAX_STAGES
            )
            steps = getattr(self, "final_steps", 0)
            if self.schedule == "gradual" and isinstance(steps, int) and steps < 2 * self.schedule_stages:
                least = 2 * self.schedule_stages
                accepted = f"at least 2 x --schedule-stages ({least}) with --schedule gradual"
                raise invalid_field("final_steps", accepted, steps)

        def slimming() -> None:
            check_integer(
                field_owner("slimming_steps"), "slimming_steps", self.slimming_steps, 0, MAX_SLIMMING_STEPS
            )

        return [flag, positive("distill_temperature"), positive("distill_weight"), schedule, stages, slimming,
                positive("slimming_reg")]  # fmt: skip


def add_family_arguments(parser: argparse.ArgumentParser, default: Callable[[str], str]) -> None:
    """The families' flags, in a group of their own (``default(name)`` shows a field's default)."""
    group = parser.add_argument_group("pruning families")
    group.add_argument(
        "--distill", action="store_true",
        help="trial and final fine-tunes also follow the unpruned model's class scores (knowledge "
        "distillation; about one more forward pass of the unpruned model a step)",
    )  # fmt: skip
    group.add_argument(
        "--distill-temperature",
        type=float,
        help=f"softens both models' class scores ({default('distill_temperature')})",
    )
    group.add_argument(
        "--distill-weight",
        type=float,
        help=f"the distillation term's weight beside the loss ({default('distill_weight')})",
    )
    group.add_argument(
        "--schedule", choices=list(SCHEDULES),
        help="the chosen model pruned at once, or gradually: in --schedule-stages stages along a cubic ramp, "
        f"fine-tuned between them, the same steps in all; trials are one-shot ({default('schedule')})",
    )  # fmt: skip
    group.add_argument(
        "--schedule-stages",
        type=int,
        help=f"stages of the gradual schedule, 2 to {MAX_STAGES} ({default('schedule_stages')})",
    )
    group.add_argument(
        "--slimming-steps", type=int,
        help="before the search, train the model this many steps with an L1 penalty on its BatchNorm "
        "scales, so that bn_scale finds channels to prune; the budget stays relative to the model as "
        f"given ({default('slimming_steps')}: none)",
    )  # fmt: skip
    group.add_argument(
        "--slimming-reg", type=float, help=f"strength of the slimming penalty ({default('slimming_reg')})"
    )
