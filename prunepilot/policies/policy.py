"""A pruning policy: for each group, a pruning ratio and a criterion, plus channel rounding and the
blocks removed whole."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from prunepilot.errors import UsageError, check_integer, invalid_parameter
from prunepilot.families.sparsity import MAX_SPARSITY
from prunepilot.policies.criteria import criterion_names

#: Largest pruning ratio a policy may give a group.
MAX_RATIO = 0.95
SCHEMA = "prunepilot.policy/1"


#: The fields of a policy file besides its schema.
FIELDS = ("round_to", "groups", "removed_blocks", "int8", "sparsity", "input_features")
#: Keys of policy files written by earlier versions, still read (``skip``: ``removed_blocks``).
OLD_KEYS = ("skip",)


@dataclass(frozen=True)
class GroupSetting:
    """How one group is pruned.

    Attributes:
        ratio: Share of the group's channels to remove, in [0, MAX_RATIO].
        criterion: Name of a registered criterion (see ``criteria.criterion_names()``).
    """

    ratio: float
    criterion: str = "l1"

    def __post_init__(self) -> None:
        ratio = self.ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or math.isnan(ratio):
            raise invalid_parameter("ratio", "GroupSetting", f"a number in [0, {MAX_RATIO}]", ratio)
        if not 0.0 <= ratio <= MAX_RATIO:
            raise invalid_parameter("ratio", "GroupSetting", f"in [0, {MAX_RATIO}]", ratio)
        if self.criterion not in criterion_names():
            raise invalid_parameter(
                "criterion", "GroupSetting", f"one of {criterion_names()}", self.criterion
            )
        object.__setattr__(self, "ratio", float(ratio))


@dataclass(frozen=True)
class Policy:
    """Per-group pruning settings; groups not named are left whole.

    Attributes:
        groups: Group name (root module's qualified name) -> setting.
        round_to: Kept channel counts are rounded up to a multiple of this (>= 1).
        removed_blocks: Removable blocks (see ``blocks.discover_blocks``) removed whole, by qualified name;
            kept sorted. The settings of groups inside a removed block have no effect.
        int8: Quantize the pruned, fine-tuned model to int8 (a runtime that supports it, such as
            ``onnxruntime``).
        sparsity: After the channels and blocks, this share of the remaining Conv and Linear
            weights (output layers aside) is zeroed, smallest magnitude first across all layers
            (see :mod:`prunepilot.families.sparsity`); it makes the stored weights compress, not
            the model faster.
        input_features: The indices (sorted) of the input features the model keeps: the others'
            weight columns in its first Linear are cut (see :mod:`prunepilot.families.features`);
            None keeps every feature.
    """

    groups: Mapping[str, GroupSetting] = field(default_factory=dict)
    round_to: int = 1
    removed_blocks: tuple[str, ...] = ()
    int8: bool = False
    sparsity: float = 0.0
    input_features: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check_integer("Policy", "round_to", self.round_to, 1)
        if not isinstance(self.removed_blocks, (tuple, list)) or not all(
            isinstance(n, str) and n for n in self.removed_blocks
        ):
            raise invalid_parameter("removed_blocks", "Policy", "a list of block names", self.removed_blocks)
        object.__setattr__(self, "removed_blocks", tuple(sorted(set(self.removed_blocks))))
        if not isinstance(self.int8, bool):
            raise invalid_parameter("int8", "Policy", "true or false", self.int8)
        sparsity = self.sparsity
        if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not (
            0.0 <= sparsity <= MAX_SPARSITY
        ):
            raise invalid_parameter("sparsity", "Policy", f"a number in [0, {MAX_SPARSITY}]", sparsity)
        object.__setattr__(self, "sparsity", float(sparsity))
        kept = self.input_features
        if kept is not None:
            if not isinstance(kept, (tuple, list)) or not kept or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in kept
            ) or len(set(kept)) != len(kept):
                accepted = "None or a list of distinct feature indices"
                raise invalid_parameter("input_features", "Policy", accepted, kept)
            object.__setattr__(self, "input_features", tuple(sorted(kept)))
        for name, setting in self.groups.items():
            if not isinstance(name, str) or not isinstance(setting, GroupSetting):
                raise invalid_parameter(
                    "groups", "Policy", "a mapping of group names to GroupSetting", self.groups
                )
        object.__setattr__(self, "groups", MappingProxyType(dict(self.groups)))

    @classmethod
    def uniform(
        cls, group_names: list[str], ratio: float, criterion: str = "l1", round_to: int = 1
    ) -> Policy:
        """The same ratio and criterion for every group."""
        return cls({name: GroupSetting(ratio, criterion) for name in group_names}, round_to)

    def to_dict(self) -> dict:
        """Plain data; ``int8`` and ``sparsity`` appear only when set (a policy without them reads as
        before they existed)."""
        data = {
            "schema": SCHEMA,
            "round_to": self.round_to,
            "groups": {name: {"ratio": s.ratio, "criterion": s.criterion} for name, s in self.groups.items()},
            "removed_blocks": list(self.removed_blocks),
        }
        if self.int8:
            data["int8"] = True
        if self.sparsity:
            data["sparsity"] = self.sparsity
        if self.input_features is not None:
            data["input_features"] = list(self.input_features)
        return data

    @classmethod
    def from_dict(cls, data: object) -> Policy:
        """Builds a policy from :meth:`to_dict`'s output.

        Raises:
            UsageError: naming the field that is wrong.
        """
        if not isinstance(data, Mapping):
            raise UsageError(f"A policy must be a JSON object. Got {type(data).__name__} instead.")
        unknown = set(data) - {*FIELDS, "schema", *OLD_KEYS}
        if unknown:
            raise UsageError(
                f"Unknown policy field(s) {sorted(unknown)}; "
                f"accepted: schema, {', '.join(FIELDS)}."
            )
        schema = data.get("schema", SCHEMA)
        if schema != SCHEMA:
            raise UsageError(f"Unsupported policy schema {schema!r}; accepted: {SCHEMA!r}.")
        groups = data.get("groups", {})
        if not isinstance(groups, Mapping):
            raise UsageError("The 'groups' field of a policy must be an object of group settings.")
        settings = {}
        for name, entry in groups.items():
            if not isinstance(entry, Mapping) or set(entry) - {"ratio", "criterion"}:
                raise UsageError(
                    f"Group {name!r} of the policy must be an object with 'ratio' and "
                    f"optional 'criterion'. Got {entry!r} instead."
                )
            try:
                settings[name] = GroupSetting(entry.get("ratio"), entry.get("criterion", "l1"))
            except UsageError as exc:
                raise UsageError(f"Group {name!r} of the policy: {exc}") from None
        # Policies written before the field was named removed_blocks call it skip.
        removed_blocks = data.get("removed_blocks", data.get("skip", []))
        if not isinstance(removed_blocks, list):
            raise UsageError(
                "The 'removed_blocks' field of a policy must be a list of block names. "
                f"Got {removed_blocks!r} instead."
            )
        int8 = data.get("int8", False)
        if not isinstance(int8, bool):
            raise UsageError(f"The 'int8' field of a policy must be true or false. Got {int8!r} instead.")
        sparsity, kept = data.get("sparsity", 0.0), data.get("input_features")
        try:
            return cls(settings, data.get("round_to", 1), tuple(removed_blocks), int8, sparsity, kept)
        except UsageError as exc:
            raise UsageError(str(exc).replace("parameter of Policy", "field of a policy")) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> Policy:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"A policy file must be JSON: {exc}.") from None
        except RecursionError:
            raise UsageError(
                "A policy file must be a JSON object of groups; this one nests too deeply."
            ) from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Reads a policy JSON file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"Cannot read the policy file {str(path)!r}: {exc.strerror}.") from None
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"{path}: A policy file must be JSON text (not UTF-8: byte {exc.start})."
            ) from None
        try:
            return cls.from_json(text)
        except UsageError as exc:
            raise UsageError(f"{path}: {exc}") from None

    def check_groups(self, group_names: Iterable[str], source: str = "The policy") -> None:
        """Raises ``UsageError`` when the policy names a group not in ``group_names``."""
        _refuse_unknown(self.groups, group_names, f"{source} names group(s) {{unknown}} that the model "
                        "does not have; its groups are {known}.")  # fmt: skip

    def check_blocks(self, block_names: Iterable[str], source: str = "The policy") -> None:
        """Raises ``UsageError`` when the policy removes a block not in ``block_names``."""
        _refuse_unknown(self.removed_blocks, block_names,
                        f"{source} removes block(s) {{unknown}} that the model "
                        "cannot lose; its removable blocks are {known}.")  # fmt: skip

    def describe(self) -> str:
        """One line: the mean ratio, the criteria used and the blocks removed."""
        removed = f"blocks removed: {', '.join(self.removed_blocks)}" if self.removed_blocks else ""
        extras = ["int8"] * self.int8 + [f"sparsity {self.sparsity:.2f}"] * bool(self.sparsity)
        if self.input_features is not None:
            extras.append(f"{len(self.input_features)} input features")
        for extra in extras:
            removed = f"{removed}; {extra}" if removed else extra
        if not self.groups:
            return removed or "no pruning"
        ratios = [s.ratio for s in self.groups.values()]
        criteria = sorted({s.criterion for s in self.groups.values() if s.ratio > 0})
        text = (
            f"mean ratio {sum(ratios) / len(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f}), criteria {'/'.join(criteria) or '-'}"
        )
        return f"{text}; {removed}" if removed else text


def _refuse_unknown(named: Iterable[str], known: Iterable[str], message: str) -> None:
    """Raises ``UsageError`` with ``message`` (``{unknown}`` and ``{known}`` filled in, sorted) when
    ``named`` holds names not in ``known``."""
    allowed = set(known)
    unknown = sorted(set(named) - allowed)
    if unknown:
        raise UsageError(message.format(unknown=unknown, known=sorted(allowed)))


def kept_channels(channels: int, ratio: float, round_to: int) -> int:
    """Channels kept when pruning ``ratio`` of ``channels``: rounded up to ``round_to``, at least 1."""
    keep = math.ceil(channels * (1.0 - ratio) - 1e-9)
    keep = math.ceil(keep / round_to) * round_to
    return max(1, min(channels, keep))
