"""The pruning families' settings, each declared once (see :mod:`prunepilot.settings.declare`),
and the rules between them and the rest of the job.

:class:`FamilyFields` is a base of :class:`~prunepilot.spec.JobSpec`, so each setting is a job
field like any other (``config.json``, ``--resume``, the Python API).
"""

from __future__ import annotations

from dataclasses import dataclass

from prunepilot.budget import parse_budget
from prunepilot.errors import UsageError
from prunepilot.families.distill import Distillation
from prunepilot.families.sparsity import MAX_SPARSITY
from prunepilot.policies.policy import MAX_RATIO
from prunepilot.runtimes.base import SIZE_MEASURES
from prunepilot.settings import Integer, Number, OneOf, named, setting
from prunepilot.settings.rules import Rule
from prunepilot.trial import SCHEDULES

__all__ = ["FAMILY_RULES", "SPARSITY_MODES", "FamilyFields"]

#: ``--sparsity`` choices: no unstructured sparsity, or one share for the whole model per policy.
SPARSITY_MODES = ("none", "global")
#: At most this many slimming warm-up steps, and schedule stages.
MAX_SLIMMING_STEPS = 100_000
MAX_STAGES = 20
_POSITIVE = Number(0, low_open=True, text="a finite number > 0")


@dataclass(frozen=True)
class FamilyFields:
    """The families' settings of a job (what each does: its ``help`` below, or ``docs/reference.md``)."""

    distill: bool = setting(
        False, "trial and final fine-tunes also follow the unpruned model's class scores (knowledge "
        "distillation; about one more forward pass of the unpruned model a step)", key="finetune.distill",
        note="the term is `weight * T² * KL(teacher ‖ pruned)` of the class scores softened by `T`",
    )  # fmt: skip
    distill_temperature: float = setting(
        4.0, "softens both models' class scores", key="finetune.distill_temperature", check=_POSITIVE
    )
    distill_weight: float = setting(
        1.0, "the distillation term's weight beside the loss", key="finetune.distill_weight", check=_POSITIVE
    )
    schedule: str = setting(
        "oneshot", "the chosen model pruned at once, or gradually: in --schedule-stages stages along a cubic "
        "ramp, fine-tuned between them, the same steps in all; trials are one-shot", key="finetune.schedule",
        check=OneOf(SCHEDULES), note="--final-steps must be at least 2 x stages",
    )  # fmt: skip
    schedule_stages: int = setting(
        4, f"stages of the gradual schedule, 2 to {MAX_STAGES}", key="finetune.schedule_stages",
        check=Integer(2, MAX_STAGES),
    )  # fmt: skip
    slimming_steps: int = setting(
        0, "before the search, train the model this many steps with an L1 penalty on its BatchNorm scales, "
        "so that bn_scale finds channels to prune; the budget stays relative to the model as given (0: none)",
        key="slimming.steps", check=Integer(0, MAX_SLIMMING_STEPS),
        note="cached; a model without BatchNorm runs without it, with a note",
    )  # fmt: skip
    slimming_reg: float = setting(
        1e-4, "strength of the slimming penalty", key="slimming.reg", check=_POSITIVE,
        note="with AdamW it acts as a threshold: scales whose loss gradient is smaller drift to 0 at about "
        "the learning rate a step",
    )  # fmt: skip
    sparsity: str = setting(
        "none", "with a size budget: each policy also zeroes a share of its weights (searched, smallest "
        "magnitude first across layers); zeros shrink the stored weights once compressed (sizes then count "
        "zlib bytes), not latency or FLOPs", key="space.sparsity", check=OneOf(SPARSITY_MODES),
        note="output layers stay dense; masks are kept through the fine-tunes, then folded into plain zeros",
    )  # fmt: skip
    sparsity_max: float = setting(
        0.9, "largest share of weights zeroed", key="space.sparsity_max",
        check=Number(0, MAX_SPARSITY, low_open=True),
    )  # fmt: skip
    size_measure: str | None = setting(
        None, "sizes (baseline, trials, budget, final) counted as saved bytes or zlib-compressed ones",
        key="deploy.size_measure", check=OneOf(SIZE_MEASURES),
        default_text="zlib with --sparsity, else saved",
        example="zlib",
    )  # fmt: skip
    input_features: bool = setting(
        False, "for a model whose input is flat features feeding an nn.Linear: the search also chooses how "
        "many input features to keep, the most informative (mutual information with the labels); the "
        "exported model takes only those", key="space.input_features",
        note="ranked on the training split (variance when the labels are not classes); the plan lists "
        "the kept features; not with --loss",
    )  # fmt: skip
    input_ratio_max: float = setting(
        0.8, "largest share of input features dropped", key="space.input_ratio_max",
        check=Number(0, MAX_RATIO, low_open=True),
    )  # fmt: skip

    @property
    def sizes_counted(self) -> str:
        """How sizes are counted: ``size_measure``, else ``zlib`` with sparsity and ``saved`` without."""
        return self.size_measure or ("saved" if self.sparsity == "none" else "zlib")

    def distillation(self) -> Distillation | None:
        """The fine-tunes' distillation settings; None without ``distill``."""
        return Distillation(self.distill_temperature, self.distill_weight) if self.distill else None


def _size_budget(job: FamilyFields) -> bool:
    try:
        return parse_budget(getattr(job, "budget", None)).cost == "size_bytes"
    except (UsageError, TypeError, AttributeError):
        return True  # the budget's own rule names what is wrong with it


#: The rules between the families' settings and the rest of the job.
FAMILY_RULES = (
    Rule("final_steps", lambda j: j.schedule != "gradual" or j.final_steps >= 2 * j.schedule_stages,
         lambda j: f"at least 2 x {named('schedule_stages')} ({2 * j.schedule_stages}) with "
         f"{named('schedule')} gradual", reads=("schedule", "schedule_stages")),
    Rule("size_measure", lambda j: j.sparsity == "none" or j.size_measure != "saved",
         lambda _: f"'zlib' with {named('sparsity')} (zeroed weights take as many bytes saved plainly)",
         reads=("sparsity",)),
    Rule("sparsity", lambda j: j.sparsity == "none" or _size_budget(j),
         "'none' unless the budget bounds size (e.g. 2MB): zeroed weights are neither faster nor fewer "
         "FLOPs", reads=("budget",)),
    Rule("input_features", lambda j: not j.input_features or j.loss is None,
         lambda _: f"false with {named('loss')} (the loss would be given the model cut to fewer features)",
         reads=("loss",)),
)  # fmt: skip
