"""The search space: a pruning :class:`Policy` <-> an Optuna trial's parameters."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import optuna

from prunepilot.errors import UsageError, check_integer, invalid_parameter
from prunepilot.families.sparsity import MAX_SPARSITY
from prunepilot.policies import MAX_RATIO, GroupInfo, GroupSetting, Policy, criterion_names
from prunepilot.policies.criteria import get_criterion
from prunepilot.policies.policy import kept_channels
from prunepilot.runtimes import QUANTIZE_MODES


def _all_criteria() -> tuple[str, ...]:
    return tuple(criterion_names())


@dataclass(frozen=True)
class SearchSpace:
    """Per-group pruning ratio and criterion, and for each removable block whether it goes.

    Attributes:
        groups: The prunable groups (from ``discover_groups``).
        blocks: The removable blocks the search may remove whole (from ``discover_blocks``).
        ratio_low: Smallest ratio proposed for a group.
        ratio_high: Largest ratio proposed for a group (at most ``MAX_RATIO``).
        ratio_step: Ratios are proposed on this grid.
        criteria: Criteria proposed (a group without BatchNorm never gets ``bn_scale``).
        round_to: Channel rounding of every proposed policy (when ``round_to_choices`` is empty).
        round_to_choices: Channel roundings the search chooses from, one per policy (kept channel
            counts that suit the hardware's vector width can be faster at equal FLOPs).
        quantize: ``none`` (every policy fp32), ``int8`` (every policy int8) or ``search`` (the
            search chooses per policy).
        sparsity_high: The largest unstructured sparsity proposed (one share for the whole model, on
            the ratio grid's step); 0 proposes none.
        feature_order: The model's input features, most informative first (see
            :func:`~prunepilot.families.feature_ranking.rank_features`); empty: every feature kept.
        input_ratio_high: The largest share of the input features removed (the least informative
            ones), on the ratio grid.
    """

    groups: tuple[GroupInfo, ...]
    blocks: tuple[str, ...] = ()
    ratio_low: float = 0.0
    ratio_high: float = 0.8
    ratio_step: float = 0.05
    criteria: tuple[str, ...] = field(default_factory=_all_criteria)
    round_to: int = 1
    round_to_choices: tuple[int, ...] = ()
    quantize: str = "none"
    sparsity_high: float = 0.0
    feature_order: tuple[int, ...] = ()
    input_ratio_high: float = 0.0

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_MODES:
            raise invalid_parameter(
                "quantize", "SearchSpace", f"one of {list(QUANTIZE_MODES)}", self.quantize
            )
        for value in (self.round_to, *self.round_to_choices):
            check_integer("SearchSpace", "round_to", value, 1)
        if not 0.0 <= self.ratio_low <= self.ratio_high:
            raise invalid_parameter(
                "ratio_low", "SearchSpace", f"in [0, ratio_high={self.ratio_high}]", self.ratio_low
            )
        if not self.ratio_high <= MAX_RATIO:
            raise invalid_parameter("ratio_high", "SearchSpace", f"in [0, {MAX_RATIO}]", self.ratio_high)
        if not 0.0 < self.ratio_step <= 0.5:
            raise invalid_parameter("ratio_step", "SearchSpace", "in (0, 0.5]", self.ratio_step)
        if not self.criteria:
            raise invalid_parameter("criteria", "SearchSpace", "a non-empty list", self.criteria)
        if not 0.0 <= self.sparsity_high <= MAX_SPARSITY:
            accepted = f"in [0, {MAX_SPARSITY}]"
            raise invalid_parameter("sparsity_high", "SearchSpace", accepted, self.sparsity_high)
        for name in self.criteria:
            get_criterion(name)  # raises naming the accepted criteria
        for group in self.groups:
            if not self.criteria_for(group):
                raise UsageError(
                    f"None of the criteria {list(self.criteria)} can score group {group.name!r} "
                    "(bn_scale needs a BatchNorm); allow another criterion."
                )

    @property
    def max_ratio(self) -> float:
        """The largest ratio on the grid (``ratio_high`` rounded down onto it)."""
        steps = int((self.ratio_high - self.ratio_low) / self.ratio_step + 1e-9)
        return round(self.ratio_low + steps * self.ratio_step, 6)

    @property
    def max_sparsity(self) -> float:
        """The largest sparsity on the grid (``sparsity_high`` rounded down onto its step)."""
        return self._on_step(self.sparsity_high)

    @property
    def max_input_ratio(self) -> float:
        """The largest share of input features removed, on the grid."""
        return self._on_step(self.input_ratio_high) if self.feature_order else 0.0

    def kept_features(self, ratio: float) -> tuple[int, ...] | None:
        """The best-ranked features left when ``ratio`` of them are removed (None: all of them)."""
        total = len(self.feature_order)
        keep = kept_channels(total, ratio, 1)
        return None if keep >= total else tuple(sorted(self.feature_order[:keep]))

    def _on_step(self, value: float) -> float:
        return round(int(value / self.ratio_step + 1e-9) * self.ratio_step, 6)

    @property
    def grid_ratios(self) -> list[float]:
        """Every ratio on the grid, from ``ratio_low`` up to ``max_ratio``."""
        steps = round((self.max_ratio - self.ratio_low) / self.ratio_step)
        return [round(self.ratio_low + k * self.ratio_step, 6) for k in range(steps + 1)]

    @property
    def default_criterion(self) -> str:
        """The criterion of warm-start policies: ``l1`` when allowed, else the first allowed."""
        return "l1" if "l1" in self.criteria else self.criteria[0]

    def criteria_for(self, group: GroupInfo) -> list[str]:
        """The criteria that can score ``group``."""
        return [c for c in self.criteria if group.has_batchnorm or not get_criterion(c).needs_batchnorm]

    def suggest(self, trial: optuna.Trial) -> Policy:
        """Asks ``trial`` for one ratio and one criterion per group, and whether each block goes."""
        settings = {}
        for group in self.groups:
            ratio = trial.suggest_float(
                f"{group.name}:ratio", self.ratio_low, self.max_ratio, step=self.ratio_step
            )
            choices = self.criteria_for(group)
            criterion = (
                trial.suggest_categorical(f"{group.name}:criterion", choices)
                if len(choices) > 1
                else choices[0]
            )
            settings[group.name] = GroupSetting(round(ratio, 6), criterion)
        round_to = self.round_to
        if self.round_to_choices:
            round_to = trial.suggest_categorical("round_to", list(self.round_to_choices))
        removed = tuple(b for b in self.blocks if trial.suggest_categorical(f"{b}:remove", [False, True]))
        int8 = self.quantize == "int8"
        if self.quantize == "search":
            int8 = trial.suggest_categorical("int8", [False, True])
        sparsity, kept = 0.0, None
        if self.sparsity_high:
            sparsity = round(trial.suggest_float("sparsity", 0.0, self.max_sparsity, step=self.ratio_step), 6)
        if self.max_input_ratio:
            kept = self.kept_features(trial.suggest_float("input:ratio", 0.0, self.max_input_ratio,
                                                          step=self.ratio_step))  # fmt: skip
        return Policy(settings, round_to, removed, int8, sparsity, kept)

    def params_of(self, policy: Policy) -> dict[str, float | str]:
        """Trial parameters closest to ``policy`` (ratios snapped onto the grid), for enqueueing."""
        params: dict[str, float | str] = {}
        for group in self.groups:
            setting = policy.groups.get(group.name, GroupSetting(0.0))
            steps = round((setting.ratio - self.ratio_low) / self.ratio_step)
            ratio = min(max(self.ratio_low + steps * self.ratio_step, self.ratio_low), self.max_ratio)
            params[f"{group.name}:ratio"] = round(ratio, 6)
            choices = self.criteria_for(group)
            if len(choices) > 1:
                criterion = setting.criterion if setting.criterion in choices else choices[0]
                params[f"{group.name}:criterion"] = criterion
        if self.round_to_choices:
            choices = self.round_to_choices
            params["round_to"] = policy.round_to if policy.round_to in choices else choices[0]
        for block in self.blocks:
            params[f"{block}:remove"] = block in policy.removed_blocks
        if self.quantize == "search":
            params["int8"] = policy.int8
        if self.sparsity_high:
            steps = round(policy.sparsity / self.ratio_step)
            params["sparsity"] = round(min(steps * self.ratio_step, self.max_sparsity), 6)
        if self.max_input_ratio:
            kept = len(policy.input_features or self.feature_order)
            steps = round((1 - kept / len(self.feature_order)) / self.ratio_step)
            params["input:ratio"] = round(min(steps * self.ratio_step, self.max_input_ratio), 6)
        return params

    def uniform(self, ratio: float, criterion: str | None = None, int8: bool | None = None) -> Policy:
        """The same ratio for every group (the hand-made recipe), with ``default_criterion``; int8
        when ``int8`` says so (None: when every policy of the space is)."""
        settings = {}
        for group in self.groups:
            choices = self.criteria_for(group)
            chosen = criterion or self.default_criterion
            settings[group.name] = GroupSetting(ratio, chosen if chosen in choices else choices[0])
        round_to = self.round_to
        if self.round_to_choices and round_to not in self.round_to_choices:
            round_to = self.round_to_choices[0]
        return Policy(settings, round_to, int8=self.quantize == "int8" if int8 is None else int8)

    def uniform_sweep(self, count: int) -> list[Policy]:
        """``count`` uniform policies with ratios spread evenly over the space's range, from its
        first step above ``ratio_low`` up to ``max_ratio`` (snapped onto the grid; duplicates
        dropped): the hand-made recipe's whole trade-off."""
        if count < 1:
            raise invalid_parameter("count", "SearchSpace.uniform_sweep", "at least 1", count)
        above_low = self.grid_ratios[1:]
        picked = sorted({max(1, round(len(above_low) * (i + 1) / count)) for i in range(count)})
        return [self.uniform(above_low[k - 1]) for k in picked if k <= len(above_low)]

    def trade_off_sweep(self, count: int) -> list[Policy]:
        """``count`` policies that map the whole trade-off: :meth:`uniform_sweep`, and when the
        space has removable blocks, half of it again with every block removed (the shallow
        model's trade-off, which reaches lower costs), the two alternating so that any first part
        of the list holds both."""
        if count < 1:
            raise invalid_parameter("count", "SearchSpace.trade_off_sweep", "at least 1", count)
        if not self.blocks or count < 2:
            return self.uniform_sweep(count)
        whole = self.uniform_sweep((count + 1) // 2)
        shallow = [replace(p, removed_blocks=self.blocks) for p in self.uniform_sweep(count // 2)]
        return [p for pair in itertools.zip_longest(whole, shallow) for p in pair if p is not None]

    def within_blocks(self, policy: Policy) -> Policy:
        """``policy`` removing only the blocks this space may remove (the rest kept), in a precision
        the space allows (its own, unless the space searches it)."""
        removed = tuple(b for b in policy.removed_blocks if b in self.blocks)
        int8 = policy.int8 if self.quantize == "search" else self.quantize == "int8"
        if removed == policy.removed_blocks and int8 == policy.int8:
            return policy
        return replace(policy, removed_blocks=removed, int8=int8)

    def clamp(self, policy: Policy) -> Policy:
        """``policy`` kept to the space (the policy :meth:`params_of` enqueues): groups outside it
        dropped (left alone), every group's ratio snapped onto the grid in ``[ratio_low,
        max_ratio]`` (a group not named gets ``ratio_low``), criteria and rounding from those the
        space allows, and only the space's blocks removed."""
        params = self.params_of(policy)
        settings = {
            g.name: GroupSetting(
                float(params[f"{g.name}:ratio"]),
                str(params.get(f"{g.name}:criterion", self.criteria_for(g)[0])),
            )
            for g in self.groups
        }
        removed = tuple(b for b in self.blocks if params[f"{b}:remove"])
        int8 = bool(params.get("int8", self.quantize == "int8"))
        sparsity = float(params.get("sparsity", 0.0))
        kept = self.kept_features(float(params.get("input:ratio", 0.0))) if self.max_input_ratio else None
        return Policy(settings, int(params.get("round_to", self.round_to)), removed, int8, sparsity, kept)

    def describe(self) -> list[str]:
        """Lines for ``--dry-run``."""
        return [
            f"ratio per group: {self.ratio_low:g} .. {self.max_ratio:g} step {self.ratio_step:g}",
            f"criteria: {', '.join(self.criteria)} (bn_scale only where a group has BatchNorm)",
            "channel rounding (round_to): "
            + (f"one of {list(self.round_to_choices)}" if self.round_to_choices else str(self.round_to)),
            f"groups: {len(self.groups)}",
            "removable blocks: " + (", ".join(self.blocks) if self.blocks else "none"),
            "precision: "
            + {"none": "fp32", "int8": "int8", "search": "fp32 or int8, per policy"}[self.quantize],
            "unstructured sparsity: "
            + (f"0 .. {self.sparsity_high:g} of the weights, global" if self.sparsity_high else "none"),
            "input features removed: "
            + (f"0 .. {self.max_input_ratio:g} of {len(self.feature_order)}, least informative first"
               if self.max_input_ratio else "none"),
        ]  # fmt: skip
