"""prunepilot: automated pruning-policy search for PyTorch models."""

from prunepilot.budget import Budget, parse_budget
from prunepilot.errors import BudgetNotMetError, PrunepilotError, UsageError
from prunepilot.policies import Policy, apply_policy, discover_groups
from prunepilot.trial import TrialResult, TrialSettings, run_trial

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "BudgetNotMetError",
    "Policy",
    "PrunepilotError",
    "TrialResult",
    "TrialSettings",
    "UsageError",
    "apply_policy",
    "discover_groups",
    "parse_budget",
    "run_trial",
]
