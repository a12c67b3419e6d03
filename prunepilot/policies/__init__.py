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
from prunepilot.policies.discovery import Discovery, DiscoveryBounds, discover
from prunepilot.policies.groups import GroupInfo, discover_groups, survey_groups
from prunepilot.policies.heads import head_counts
from prunepilot.policies.policy import MAX_RATIO, GroupSetting, Policy, kept_channels

__all__ = [
    "MAX_RATIO",
    "Plan",
    "PrunedModel",
    "Criterion",
    "Discovery",
    "DiscoveryBounds",
    "GroupInfo",
    "GroupSetting",
    "Policy",
    "apply_plan",
    "apply_policy",
    "criterion_names",
    "discover",
    "discover_blocks",
    "discover_groups",
    "get_criterion",
    "head_counts",
    "kept_channels",
    "register_criterion",
    "remove_blocks",
    "survey_groups",
]
