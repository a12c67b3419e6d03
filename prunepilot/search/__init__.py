"""Search: the space (policy <-> trial), the driver (ask/tell), Pareto fronts and selection."""

from prunepilot.search.driver import (
    Objective,
    open_study,
    recover_interrupted,
    run_search,
    warm_start,
)
from prunepilot.search.pareto import choose, closest, feasible_front, full_front, pareto_indices
from prunepilot.search.space import SearchSpace

__all__ = [
    "Objective",
    "SearchSpace",
    "choose",
    "closest",
    "feasible_front",
    "full_front",
    "open_study",
    "pareto_indices",
    "recover_interrupted",
    "run_search",
    "warm_start",
]
