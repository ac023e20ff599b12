"""MI estimators: the paper's single-vector HSIC score and population dependence measures."""

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

__all__ = [
    "PAPER_EPS",
    "PAPER_SIGMA",
    "PAPER_SIGMA_GRID",
    "LowRankConfig",
    "PaperHSIC",
    "median_bandwidth",
    "paper_hsic",
    "paper_hsic_grid",
]
