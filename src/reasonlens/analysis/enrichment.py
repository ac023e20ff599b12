"""Are MI peaks enriched in thinking words? Share of peaks on a word set against the words' base rate.

For each trace, count peaks whose generated token is one of the words' ids, all peaks, the words' tokens and
all tokens. The enrichment ratio is (peaks on the words / all peaks) / (tokens that are the words / all
tokens): 1 means peaks fall on the words no more often than the words occur; the 95% CI resamples traces.
The ids are whole-word ids only (case and leading-space variants), never first pieces of split words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class TraceCounts:
    peaks_on_words: int
    peaks: int
    tokens_on_words: int
    tokens: int


def trace_counts(token_ids: Sequence[int], peak_steps: Iterable[int], word_ids: set[int]) -> TraceCounts:
    ids = [int(t) for t in token_ids]
    steps = [int(s) for s in peak_steps]
    return TraceCounts(sum(ids[s] in word_ids for s in steps), len(steps), sum(t in word_ids for t in ids), len(ids))


def _ratio(rows: np.ndarray) -> float:
    peaks_on, peaks, tokens_on, tokens = rows.sum(axis=0)
    if peaks == 0 or tokens_on == 0 or tokens == 0:
        return float("nan")
    return float((peaks_on / peaks) / (tokens_on / tokens))


def peak_enrichment(
    counts: Sequence[TraceCounts], words: Sequence[str], n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Enrichment ratio of peaks on ``words`` with a percentile bootstrap 95% CI over traces."""
    rows = np.array([[c.peaks_on_words, c.peaks, c.tokens_on_words, c.tokens] for c in counts], dtype=float)
    if rows.size == 0:
        return {"words": list(words), "n_traces": 0, "ratio": None, "ci95": [None, None]}
    totals = rows.sum(axis=0)
    rng = np.random.default_rng(seed)
    draws = [_ratio(rows[rng.integers(0, len(rows), len(rows))]) for _ in range(n_boot)]
    draws = [d for d in draws if d == d]
    low, high = (float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))) if draws else (None, None)
    ratio = _ratio(rows)
    return {
        "words": list(words),
        "n_traces": int(len(rows)),
        "peak_share": float(totals[0] / totals[1]) if totals[1] else None,
        "base_rate": float(totals[2] / totals[3]) if totals[3] else None,
        "ratio": ratio if ratio == ratio else None,
        "ci95": [low, high],
        "n_peaks": int(totals[1]),
        "n_tokens": int(totals[3]),
    }


def whole_word_ids(tokenizer: Any, words: Sequence[str]) -> set[int]:
    from reasonlens.analysis.tokens import words_ids

    return set(words_ids(tokenizer, words))
