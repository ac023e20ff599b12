"""Peaks and per-trace statistics against hand-computed sequences."""

import math

import numpy as np
import pytest

from reasonlens.analysis.peaks import PeakConfig, aggregate_stats, find_peaks, quartiles, trace_stats
from reasonlens.errors import UserError

TWO_PEAKS = [0, 1, 2, 3, 40, 4, 5, 6, 7, 30]  # sorted: 0..7, 30, 40 -> Q1 2.25, median 4.5, Q3 6.75


def test_quartiles_interpolate_linearly():
    assert quartiles(TWO_PEAKS) == (2.25, 4.5, 6.75)


def test_iqr_rule_with_hand_computed_threshold():
    # threshold = 6.75 + 1.5 * 4.5 = 13.5
    assert find_peaks(TWO_PEAKS).tolist() == [4, 9]
    assert find_peaks(TWO_PEAKS, PeakConfig(tau=7.0)).tolist() == [4]  # threshold 38.25
    assert find_peaks([3.0] * 6).tolist() == []  # flat trace: nothing exceeds Q3


def test_tau_changes_threshold_exactly_at_boundary():
    # tau such that Q3 + tau * IQR == 30: 30 is not strictly above, 40 is
    tau = (30 - 6.75) / 4.5
    assert find_peaks(TWO_PEAKS, PeakConfig(tau=tau)).tolist() == [4]


def test_topk_mode_takes_largest_with_earlier_step_on_ties():
    assert find_peaks([5, 9, 9, 1, 7], PeakConfig(mode="topk", k=3)).tolist() == [1, 2, 4]
    assert find_peaks([9, 5, 9, 9], PeakConfig(mode="topk", k=2)).tolist() == [0, 2]
    assert find_peaks([1, 2], PeakConfig(mode="topk", k=20)).tolist() == [0, 1]


def test_trace_stats_two_peaks():
    s = trace_stats(TWO_PEAKS)
    values = np.array(TWO_PEAKS, dtype=float)
    assert (s.n_steps, s.n_peaks) == (10, 2)
    assert s.peak_ratio == pytest.approx(0.2)
    assert (s.interval_max, s.interval_min, s.interval_avg) == (5.0, 5.0, 5.0)
    assert s.mean == pytest.approx(9.8)
    assert s.std == pytest.approx(float(values.std()))
    assert s.aom == pytest.approx(((40 - 4.5) + (30 - 4.5)) / 2 / 4.5)
    assert s.cumulative == pytest.approx(98.0)


def test_trace_stats_intervals_and_undefined_values():
    three = trace_stats([0, 9, 0, 0, 9, 0, 0, 0, 0, 9, 0, 0], PeakConfig(mode="topk", k=3))
    assert (three.interval_max, three.interval_min, three.interval_avg) == (5.0, 3.0, 4.0)
    assert three.aom == pytest.approx(9 / 2.25)  # Q3 = 0.25 * 9, Q1 = 0, median 0
    assert math.isnan(trace_stats([0, 0, 0, 0, 0, 5], PeakConfig(mode="topk", k=1)).aom)  # IQR 0
    one = trace_stats([0, 1, 2, 3, 4, 5, 6, 7, 8, 30])
    assert one.n_peaks == 1 and math.isnan(one.interval_avg)
    assert one.aom == pytest.approx((30 - 4.5) / 4.5)
    empty = trace_stats([])
    assert empty.n_steps == 0 and empty.n_peaks == 0


def test_aggregate_means_skip_undefined_and_bracket_estimate():
    stats = [trace_stats(TWO_PEAKS), trace_stats([0, 1, 2, 3, 4, 5, 6, 7, 8, 30]), trace_stats([1.0, 2.0, 3.0, 4.0])]
    agg = aggregate_stats(stats, n_boot=500, seed=1)
    assert agg["n_peaks"].n == 3 and agg["n_peaks"].mean == pytest.approx(1.0)
    assert agg["interval_avg"].n == 1 and agg["interval_avg"].mean == 5.0
    mean = agg["mean"]
    assert mean.lo <= mean.mean <= mean.hi
    assert mean.mean == pytest.approx((9.8 + 6.6 + 2.5) / 3)
    assert mean.lo >= 2.5 and mean.hi <= 9.8


def test_bad_config_raises_user_error():
    with pytest.raises(UserError, match="peak mode"):
        PeakConfig(mode="max")
    with pytest.raises(UserError, match="k"):
        PeakConfig(mode="topk", k=0)
