"""Peak enrichment on a word set: ratio of the words' share of peaks to their base rate, with a trace bootstrap."""

from __future__ import annotations

import math

from reasonlens.analysis.enrichment import TraceCounts, peak_enrichment, trace_counts


def test_trace_counts_and_ratio_by_hand():
    counts = trace_counts([5, 7, 5, 9, 5, 1], peak_steps=[0, 3], word_ids={5})
    assert counts == TraceCounts(peaks_on_words=1, peaks=2, tokens_on_words=3, tokens=6)
    result = peak_enrichment([counts], ["So"], n_boot=50)
    assert math.isclose(result["ratio"], (1 / 2) / (3 / 6)) and result["ratio"] == 1.0


def test_peaks_on_the_words_give_a_ratio_above_one_with_a_ci_excluding_one():
    # 40 traces of 100 tokens; the words are 10% of tokens but 60% of peaks (+ a little per-trace noise)
    traces = [TraceCounts(6 + i % 2, 10 + i % 3, 10, 100) for i in range(40)]
    result = peak_enrichment(traces, ["So", "Wait"], n_boot=500, seed=1)
    assert 5.0 < result["ratio"] < 7.0
    assert 1.0 < result["ci95"][0] <= result["ratio"] <= result["ci95"][1]
    null = peak_enrichment([TraceCounts(1, 10, 10, 100) for _ in range(20)], ["So"], n_boot=200)
    assert null["ratio"] == 1.0 and null["ci95"] == [1.0, 1.0]
    assert peak_enrichment([], ["So"])["ratio"] is None
    assert peak_enrichment([TraceCounts(0, 0, 0, 5)], ["So"])["ratio"] is None
