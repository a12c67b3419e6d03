"""The job's settings of the pruning families beside channel and block pruning: distillation, the
gradual schedule, the slimming warm-up and unstructured sparsity (their fields, checks, job-file
keys and flags).

:class:`FamilyFields` is a base of :class:`~prunepilot.spec.JobSpec`, so each setting is a job
field like any other (``config.json``, ``--resume``, the Python API).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

from prunepilot.budget import parse_budget
from prunepilot.distill import Distillation
from prunepilot.errors import UsageError, check_integer, invalid_parameter
from prunepilot.policies.policy import MAX_RATIO, MAX_SPARSITY
from prunepilot.runtimes.base import SIZE_MEASURES
from prunepilot.trial import SCHEDULES

__all__ = ["FamilyFields", "add_family_arguments", "field_owner", "invalid_field"]

#: ``--sparsity`` choices: no unstructured sparsity, or one share for the whole model per policy.
SPARSITY_MODES = ("none", "global")
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
    ("space.sparsity", "sparsity", "str", "unstructured sparsity searched: none or global (size budgets)"),
    ("space.sparsity_max", "sparsity_max", "float", "largest share of weights zeroed (at most 0.99)"),
    ("deploy.size_measure", "size_measure", "str", "sizes counted as saved or zlib-compressed bytes"),
    ("space.input_features", "input_features", "bool", "drop uninformative input features"),
    ("space.input_ratio_max", "input_ratio_max", "float", "largest share of input features dropped"),
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
        sparsity: ``global``: each policy also zeroes a share (searched, up to ``sparsity_max``) of
            its Conv and Linear weights, smallest magnitude first across layers (see
            :mod:`prunepilot.policies.sparsity`). Zeros make a model neither faster nor fewer FLOPs,
            only its stored weights smaller once compressed: only with a size budget. ``none``: off.
        sparsity_max: The largest share proposed.
        size_measure: How sizes are counted: ``saved`` bytes or ``zlib``-compressed ones; None:
            ``zlib`` with sparsity, else ``saved``.
        input_features: For a model whose input is flat features feeding an ``nn.Linear``: the
            search also chooses how many input features to keep, the most informative ones
            (mutual information with the labels on the training split, see
            :mod:`prunepilot.tasks.features`); the exported model takes only those.
        input_ratio_max: The largest share of the input features dropped.
    """

    distill: bool = False
    distill_temperature: float = 4.0
    distill_weight: float = 1.0
    schedule: str = "oneshot"
    schedule_stages: int = 4
    slimming_steps: int = 0
    slimming_reg: float = 1e-4
    sparsity: str = "none"
    sparsity_max: float = 0.9
    size_measure: str | None = None
    input_features: bool = False
    input_ratio_max: float = 0.8

    @property
    def sizes_counted(self) -> str:
        """How sizes are counted: ``size_measure``, else ``zlib`` with sparsity and ``saved`` without."""
        return self.size_measure or ("saved" if self.sparsity == "none" else "zlib")

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

        def sparsity() -> None:
            if self.sparsity not in SPARSITY_MODES:
                raise invalid_field("sparsity", f"one of {list(SPARSITY_MODES)}", self.sparsity)
            measure = self.size_measure
            if measure is not None and measure not in SIZE_MEASURES:
                raise invalid_field("size_measure", f"None or one of {list(SIZE_MEASURES)}", measure)
            if not (isinstance(self.sparsity_max, (int, float)) and 0 < self.sparsity_max <= MAX_SPARSITY):
                raise invalid_field("sparsity_max", f"in (0, {MAX_SPARSITY}]", self.sparsity_max)
            if self.sparsity == "none":
                return
            if measure == "saved":
                accepted = "'zlib' with --sparsity (zeroed weights take as many bytes saved plainly)"
                raise invalid_field("size_measure", accepted, measure)
            try:
                cost = parse_budget(getattr(self, "budget", None)).cost
            except (UsageError, TypeError, AttributeError):
                return  # the budget's own check names what is wrong with it
            if cost != "size_bytes":
                accepted = ("'none' unless the budget bounds size (e.g. 2MB): zeroed weights are neither "
                            "faster nor fewer FLOPs")
                raise invalid_field("sparsity", accepted, self.sparsity)

        def features() -> None:
            if not isinstance(self.input_features, bool):
                raise invalid_field("input_features", "true or false", self.input_features)
            ratio = self.input_ratio_max
            if not (isinstance(ratio, (int, float)) and 0 < ratio <= MAX_RATIO):
                raise invalid_field("input_ratio_max", f"in (0, {MAX_RATIO}]", self.input_ratio_max)
            if self.input_features and getattr(self, "loss", None) is not None:
                accepted = "false with --loss (the loss would be given the model cut to fewer features)"
                raise invalid_field("input_features", accepted, self.input_features)

        return [flag, positive("distill_temperature"), positive("distill_weight"), schedule, stages, slimming,
                positive("slimming_reg"), sparsity, features]  # fmt: skip


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
        f"given ({default('slimming_steps')}; 0: none)",
    )  # fmt: skip
    group.add_argument(
        "--slimming-reg", type=float, help=f"strength of the slimming penalty ({default('slimming_reg')})"
    )
    group.add_argument(
        "--sparsity", choices=list(SPARSITY_MODES),
        help="with a size budget: each policy also zeroes a share of its weights (searched, smallest "
        "magnitude first across layers); zeros shrink the stored weights once compressed (sizes then count "
        f"zlib bytes), not latency or FLOPs ({default('sparsity')})",
    )  # fmt: skip
    group.add_argument("--sparsity-max", type=float,
                       help=f"largest share of weights zeroed ({default('sparsity_max')})")  # fmt: skip
    group.add_argument(
        "--input-features", action="store_true",
        help="for a model whose input is flat features feeding an nn.Linear: the search also chooses how "
        "many input features to keep, the most informative (mutual information with the labels); the "
        "exported model takes only those",
    )  # fmt: skip
    group.add_argument(
        "--input-ratio-max", type=float,
        help=f"largest share of input features dropped ({default('input_ratio_max')})",
    )  # fmt: skip
    group.add_argument(
        "--size-measure", choices=list(SIZE_MEASURES),
        help="sizes counted as saved bytes or zlib-compressed (default: zlib with --sparsity)",
    )  # fmt: skip
