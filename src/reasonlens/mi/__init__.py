"""MI estimators: the paper's single-vector HSIC score and population dependence measures.

Per-trace estimators are registered by name (`reasonlens.mi.estimators`); importing a module registers its
estimators, so the import of `reasonlens.mi.paper` below is the paper HSIC's registration line.
"""

from reasonlens.mi.estimators import Estimator, estimator_names, get_estimator, register_estimator
from reasonlens.mi.paper import (
    PAPER_EPS,
    PAPER_SIGMA,
    PAPER_SIGMA_GRID,
    LowRankConfig,
    PaperHSIC,
    median_bandwidth,
    paper_hsic,
    paper_hsic_grid,
)
from reasonlens.mi.population import (
    GramStatistic,
    PermutationResult,
    cka_from_grams,
    gram,
    hsic,
    hsic_from_grams,
    linear_cka,
    median_heuristic,
    permutation_test,
    permutation_test_result,
)
from reasonlens.mi.trajectory import AlignedStates, TrajectoryPoint, population_trajectory

__all__ = [
    "Estimator",
    "estimator_names",
    "get_estimator",
    "register_estimator",
    "AlignedStates",
    "GramStatistic",
    "PermutationResult",
    "TrajectoryPoint",
    "cka_from_grams",
    "gram",
    "hsic",
    "hsic_from_grams",
    "linear_cka",
    "median_heuristic",
    "permutation_test",
    "permutation_test_result",
    "population_trajectory",
    "PAPER_EPS",
    "PAPER_SIGMA",
    "PAPER_SIGMA_GRID",
    "LowRankConfig",
    "PaperHSIC",
    "median_bandwidth",
    "paper_hsic",
    "paper_hsic_grid",
]
