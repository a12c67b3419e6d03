"""Search: the space (policy <-> trial), the study's lifecycle, the driver (ask -> screen -> submit ->
tell), where trials run, budget screening, and Pareto fronts.

Called, the package runs a whole search: ``prunepilot.search(model, train=..., val=..., budget=...)``
(:mod:`prunepilot.api` makes it callable; this package imports nothing above it).
"""

from prunepilot.search.calibration import Calibration
from prunepilot.search.driver import run_search, tell_outcome
from prunepilot.search.executors import InProcessExecutor, RayExecutor, RaySettings, TrialExecutor
from prunepilot.search.pareto import choose, closest, feasible_front, full_front, hypervolume, pareto_indices
from prunepilot.search.screen import BudgetScreen
from prunepilot.search.space import SearchSpace
from prunepilot.search.study import RunStudy, open_storage, open_study, recover_interrupted, warm_start

__all__ = [
    "BudgetScreen",
    "Calibration",
    "InProcessExecutor",
    "RayExecutor",
    "RaySettings",
    "RunStudy",
    "SearchSpace",
    "TrialExecutor",
    "choose",
    "closest",
    "feasible_front",
    "full_front",
    "hypervolume",
    "open_storage",
    "open_study",
    "pareto_indices",
    "recover_interrupted",
    "run_search",
    "tell_outcome",
    "warm_start",
]
