"""prunepilot: automated pruning-policy search for PyTorch models.

    import prunepilot
    result = prunepilot.search(model, train=train, val=val, test=test, budget="2x")

``prunepilot.search`` is both the search subpackage and, called, :func:`prunepilot.api.search`.
"""

from prunepilot import search  # the subpackage, made callable by prunepilot.api
from prunepilot._version import __version__
from prunepilot.api import SearchResult, run
from prunepilot.budget import Budget, BudgetLimit, parse_budget
from prunepilot.errors import BudgetNotMetError, PrunepilotError, UsageError
from prunepilot.policies import Plan, Policy, apply_plan, apply_policy, discover_groups
from prunepilot.spec import JobSpec
from prunepilot.trial import TrialResult, TrialSettings, run_trial

__all__ = [
    "Budget",
    "__version__",
    "BudgetLimit",
    "BudgetNotMetError",
    "JobSpec",
    "Plan",
    "Policy",
    "PrunepilotError",
    "SearchResult",
    "TrialResult",
    "TrialSettings",
    "UsageError",
    "apply_plan",
    "apply_policy",
    "discover_groups",
    "parse_budget",
    "run",
    "run_trial",
    "search",
]
