"""Policies: prunable groups, removable blocks, importance criteria, the policy itself and how it is
applied."""

from prunepilot.policies.apply import Plan, PrunedModel, apply_plan, apply_policy
from prunepilot.policies.blocks import discover_blocks, remove_blocks
from prunepilot.policies.criteria import (
    Criterion,
    criterion_names,
    get_criterion,
    register_criterion,
)
from prunepilot.policies.groups import GroupInfo, discover_groups
from prunepilot.policies.policy import MAX_RATIO, GroupSetting, Policy, kept_channels

__all__ = [
    "MAX_RATIO",
    "Plan",
    "PrunedModel",
    "Criterion",
    "GroupInfo",
    "GroupSetting",
    "Policy",
    "apply_plan",
    "apply_policy",
    "criterion_names",
    "discover_blocks",
    "discover_groups",
    "get_criterion",
    "kept_channels",
    "register_criterion",
    "remove_blocks",
]
