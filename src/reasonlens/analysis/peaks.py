"""MI peaks and per-trace statistics (SPEC A3).

Peaks (paper, Definition 2): ``m_t > Q3 + tau * IQR`` with ``IQR = Q3 - Q1`` (``mode="iqr"``, tau 1.5).
The released notebook instead takes the top-20 values (``mode="topk"``; ties go to the earlier step,
like its stable sort). Quartiles use linear interpolation (numpy's default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from reasonlens.errors import UserError
from reasonlens.eval.stats import Interval, bootstrap_ci

PEAK_MODES = ("iqr", "topk")


@dataclass(frozen=True)
class PeakConfig:
    """``mode``: ``"iqr"`` (paper) or ``"topk"`` (reference notebook); ``tau`` for iqr, ``k`` for topk."""

    mode: str = "iqr"
    tau: float = 1.5
    k: int = 20

    def __post_init__(self) -> None:
        if self.mode not in PEAK_MODES:
            raise UserError(f"peak mode must be one of {', '.join(PEAK_MODES)}, got {self.mode!r}")
        if self.mode == "iqr" and not self.tau >= 0:
            raise UserError(f"tau must be >= 0, got {self.tau}")
        if self.mode == "topk" and self.k < 1:
            raise UserError(f"k must be >= 1, got {self.k}")


def _as_values(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise UserError(f"an MI trajectory must be one-dimensional, got shape {array.shape}")
    return array


def quartiles(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """``(Q1, median, Q3)`` with linear interpolation."""
    q1, med, q3 = np.percentile(_as_values(values), [25.0, 50.0, 75.0])
    return float(q1), float(med), float(q3)


def find_peaks(values: Sequence[float] | np.ndarray, config: PeakConfig = PeakConfig()) -> np.ndarray:
    """Steps of the peaks of one trajectory, ascending (int64)."""
    array = _as_values(values)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if config.mode == "topk":
        order = np.argsort(-array, kind="stable")[: config.k]
        return np.sort(order).astype(np.int64)
    q1, _, q3 = quartiles(array)
    return np.nonzero(array > q3 + config.tau * (q3 - q1))[0].astype(np.int64)


@dataclass(frozen=True)
class TraceStats:
    """Statistics of one trajectory. Intervals are gaps between consecutive peak steps (NaN with < 2
    peaks); ``std`` is the population standard deviation; ``aom`` = mean over peaks of
    ``|m_i - median| / IQR`` (NaN without peaks or when the IQR is 0)."""

    n_steps: int
    n_peaks: int
    peak_ratio: float
    interval_max: float
    interval_min: float
    interval_avg: float
    mean: float
    std: float
    aom: float
    cumulative: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


STAT_FIELDS = tuple(TraceStats.__dataclass_fields__)


def trace_stats(
    values: Sequence[float] | np.ndarray, config: PeakConfig = PeakConfig(), peaks: np.ndarray | None = None
) -> TraceStats:
    """Peak statistics of one trajectory (``peaks`` defaults to :func:`find_peaks` with ``config``)."""
    array = _as_values(values)
    n = int(array.size)
    if n == 0:
        nan = math.nan
        return TraceStats(0, 0, nan, nan, nan, nan, nan, nan, nan, 0.0)
    steps = find_peaks(array, config) if peaks is None else np.asarray(peaks, dtype=np.int64)
    gaps = np.diff(steps)
    q1, med, q3 = quartiles(array)
    iqr = q3 - q1
    if steps.size and iqr > 0:
        aom = float(np.mean(np.abs(array[steps] - med)) / iqr)
    else:
        aom = math.nan
    return TraceStats(
        n_steps=n,
        n_peaks=int(steps.size),
        peak_ratio=steps.size / n,
        interval_max=float(gaps.max()) if gaps.size else math.nan,
        interval_min=float(gaps.min()) if gaps.size else math.nan,
        interval_avg=float(gaps.mean()) if gaps.size else math.nan,
        mean=float(array.mean()),
        std=float(array.std()),
        aom=aom,
        cumulative=float(array.sum()),
    )


@dataclass(frozen=True)
class Aggregate:
    """Mean of one statistic over traces with a percentile bootstrap CI; ``n`` traces where it is defined."""

    field: str
    n: int
    mean: float
    lo: float
    hi: float


def aggregate_stats(
    stats: Sequence[TraceStats], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> dict[str, Aggregate]:
    """Per statistic: the mean over traces (NaNs, i.e. undefined values, skipped) with a bootstrap CI."""
    out: dict[str, Aggregate] = {}
    for name in STAT_FIELDS:
        column = np.array([getattr(s, name) for s in stats], dtype=np.float64)
        column = column[np.isfinite(column)]
        if column.size == 0:
            out[name] = Aggregate(name, 0, math.nan, math.nan, math.nan)
            continue
        est: Interval = bootstrap_ci(column, n_boot=n_boot, alpha=alpha, seed=seed)
        out[name] = Aggregate(name, int(column.size), est.estimate, est.lo, est.hi)
    return out
