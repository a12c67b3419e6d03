"""The pruning families beside channel and block pruning, each in a module of its own.

A *family* is one more way to make the model smaller or to recover what pruning costs, that a job
turns on with its settings (all off by default). A family plugs in at one or more of five places,
and nowhere else:

- **base**: the model the search starts from, made once before the search
  (``prunepilot.pipeline.prepare``; the baseline and the budget stay the user's model's);
- **space**: the search also chooses the family's amount per policy (a :class:`Policy` field the
  :class:`~prunepilot.search.SearchSpace` samples, warm-starts and clamps);
- **trial**: what runs between pruning and scoring a trial (``prunepilot.trial.prune_and_train``:
  applied after the channels, kept through the fine-tune, folded before anything is measured);
- **final**: the chosen model's fine-tune (``prunepilot.final``);
- **export**: what the exported model and its plan take (``prunepilot.export``).

A new family is a module here, its settings declared in :mod:`prunepilot.families.settings`
(one ``setting(...)`` each, which gives its flag, job-file key, check, schema and reference row),
its cross-setting rules there too, an entry in :data:`FAMILIES`, and calls at its places only.
This package imports none of its modules, so that the places above may import them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAMILIES", "PLACES", "Family"]

#: Where a family may plug in (see the module's text).
PLACES = ("base", "space", "trial", "final", "export")


@dataclass(frozen=True)
class Family:
    """One family: its module, its settings and where it plugs in.

    Attributes:
        name: What the report and docs call it.
        module: The module that implements it.
        settings: The job settings that turn it on and shape it (``JobSpec`` fields).
        places: Where it plugs in, from :data:`PLACES`.
    """

    name: str
    module: str
    settings: tuple[str, ...]
    places: tuple[str, ...]


FAMILIES = (
    Family("distillation", "prunepilot.families.distill",
           ("distill", "distill_temperature", "distill_weight"), ("trial", "final")),
    Family("gradual schedule", "prunepilot.families.gradual", ("schedule", "schedule_stages"), ("final",)),
    Family("slimming warm-up", "prunepilot.families.slimming", ("slimming_steps", "slimming_reg"), ("base",)),
    Family("unstructured sparsity", "prunepilot.families.sparsity",
           ("sparsity", "sparsity_max", "size_measure"), ("space", "trial", "final", "export")),
    Family("input features", "prunepilot.families.features",
           ("input_features", "input_ratio_max"), ("base", "space", "trial", "export")),
)  # fmt: skip
