"""Confidence intervals: Wilson score for a proportion (an accuracy), percentile bootstrap for paired method
differences, means and AUCs.

A percentile bootstrap of a proportion collapses at the boundary (0/4 correct resamples to [0, 0]), so an
accuracy gets the Wilson score interval, which never has zero width: 0/4 -> [0, 0.49], 16/16 -> [0.81, 1].
The bootstrap is numpy only, deterministic given ``seed``. Resampling is done in chunks so
memory stays bounded (about ``_CHUNK_ELEMENTS`` indices at a time) whatever ``n * n_boot`` is.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import numpy as np

from reasonlens.errors import UserError

__all__ = [
    "Interval",
    "auc",
    "auc_with_ci",
    "bootstrap_ci",
    "majority_correct",
    "multi_sample_summary",
    "paired_bootstrap_diff",
    "pass_at_k",
    "proportion_ci",
    "sample_ks",
    "wilson_ci",
]

_CHUNK_ELEMENTS = 4_000_000


class Interval(NamedTuple):
    """A point estimate with its two-sided ``1 - alpha`` interval; unpacks as ``(estimate, lo, hi)``."""

    estimate: float
    lo: float
    hi: float


def _as_vector(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise UserError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise UserError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise UserError(f"{name} contains NaN or infinite values")
    return array


def _check_options(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise UserError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise UserError(f"alpha must be in (0, 1), got {alpha}")


def _percentiles(replicates: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def wilson_ci(successes: int, n: int, alpha: float = 0.05) -> Interval:
    """Proportion ``successes / n`` with its Wilson score interval (Wilson 1927; Brown, Cai & DasGupta 2001)."""
    from statistics import NormalDist

    if not 0 < alpha < 1:
        raise UserError(f"alpha must be in (0, 1), got {alpha}")
    if n < 1 or not 0 <= successes <= n:
        raise UserError(f"a proportion needs 0 <= successes <= n and n >= 1, got {successes}/{n}")
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # exact at the boundaries (floating point would give 1e-17 instead of 0)
    lo = 0.0 if successes == 0 else max(0.0, float(centre - half))
    hi = 1.0 if successes == n else min(1.0, float(centre + half))
    return Interval(p, lo, hi)


def proportion_ci(outcomes: Sequence[bool] | np.ndarray, alpha: float = 0.05) -> Interval:
    """Accuracy of 0/1 (or bool) ``outcomes`` with its Wilson score interval."""
    array = _as_vector(outcomes, "outcomes")
    if not np.all(np.isin(array, (0.0, 1.0))):
        raise UserError("outcomes must be 0/1 or bools (use bootstrap_ci for a mean of other values)")
    return wilson_ci(int(array.sum()), int(array.size), alpha)


def _bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    n = values.size
    chunk = max(1, _CHUNK_ELEMENTS // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        indices = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[indices].mean(axis=1)
    return means


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> Interval:
    """Mean of ``values`` with a percentile bootstrap CI (for a proportion use ``proportion_ci``: the
    bootstrap interval of 0/4 is [0, 0])."""
    _check_options(n_boot, alpha)
    array = _as_vector(values, "values")
    estimate = float(array.mean())
    if array.size == 1:
        return Interval(estimate, estimate, estimate)
    replicates = _bootstrap_means(array, n_boot, np.random.default_rng(seed))
    return Interval(estimate, *_percentiles(replicates, alpha))


def paired_bootstrap_diff(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """Mean of ``a - b`` for two methods scored on the same, aligned problems, with a CI that
    resamples problems (both methods together), so per-problem difficulty cancels."""
    _check_options(n_boot, alpha)
    first = _as_vector(a, "a")
    second = _as_vector(b, "b")
    if first.size != second.size:
        raise UserError(f"a and b must be aligned on the same problems, got lengths {first.size} and {second.size}")
    return bootstrap_ci(first - second, n_boot=n_boot, alpha=alpha, seed=seed)


def _binary_labels(labels: Sequence[int] | np.ndarray, size: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or array.size != size:
        raise UserError(f"labels must be a vector of the same length as scores ({size}), got shape {array.shape}")
    if array.dtype != bool:
        if not np.all(np.isin(array, (0, 1))):
            raise UserError("labels must be binary (0/1 or bool)")
        array = array.astype(bool)
    if array.all() or not array.any():
        raise UserError("labels must contain both classes to compute an AUC")
    return array


def _average_ranks(rows: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis with ties given their average rank (vectorised over rows)."""
    order = np.argsort(rows, axis=-1, kind="stable")
    sorted_rows = np.take_along_axis(rows, order, axis=-1)
    n = rows.shape[-1]
    positions = np.broadcast_to(np.arange(1, n + 1, dtype=np.float64), rows.shape)
    new_run = np.ones(rows.shape, dtype=bool)
    new_run[..., 1:] = sorted_rows[..., 1:] != sorted_rows[..., :-1]
    run_id = np.cumsum(new_run, axis=-1) - 1
    # Average position per run of ties, computed with a flat bincount over (row, run) pairs.
    flat_run = (run_id + (np.arange(rows.shape[0])[:, None] * n)).ravel()
    run_sum = np.bincount(flat_run, weights=positions.ravel(), minlength=rows.shape[0] * n)
    run_len = np.bincount(flat_run, minlength=rows.shape[0] * n)
    average = (run_sum[flat_run] / run_len[flat_run]).reshape(rows.shape)
    ranks = np.empty_like(average)
    np.put_along_axis(ranks, order, average, axis=-1)
    return ranks


def _auc_rows(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC, row by row, for score matrices of positives [B, P] and negatives [B, N]."""
    n_pos, n_neg = positive.shape[1], negative.shape[1]
    ranks = _average_ranks(np.concatenate([positive, negative], axis=1))
    rank_sum = ranks[:, :n_pos].sum(axis=1)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Area under the ROC curve (probability a positive outscores a negative; ties count half)."""
    values = _as_vector(scores, "scores")
    mask = _binary_labels(labels, values.size)
    return float(_auc_rows(values[mask][None, :], values[~mask][None, :])[0])


def auc_with_ci(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """AUC with a stratified percentile bootstrap CI (positives and negatives resampled separately,
    so every replicate has both classes and the class balance of the data)."""
    _check_options(n_boot, alpha)
    values = _as_vector(scores, "scores")
    mask = _binary_labels(labels, values.size)
    positive, negative = values[mask], values[~mask]
    estimate = float(_auc_rows(positive[None, :], negative[None, :])[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // values.size)
    replicates = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        pos_rows = positive[rng.integers(0, positive.size, size=(stop - start, positive.size))]
        neg_rows = negative[rng.integers(0, negative.size, size=(stop - start, negative.size))]
        replicates[start:stop] = _auc_rows(pos_rows, neg_rows)
    return Interval(estimate, *_percentiles(replicates, alpha))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct among ``n`` samples: 1 - C(n-c, k) / C(n, k)
    (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", eq. 1)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise UserError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # the product form avoids huge binomials: C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_correct(answers: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """maj@k of one problem: is the most frequent extracted answer among the samples correct?

    Samples without an answer do not vote; ties go to the answer seen first. No answer at all counts wrong.
    """
    if len(answers) != len(correct):
        raise UserError(f"answers and correct differ in length ({len(answers)} vs {len(correct)})")
    votes: dict[str, int] = {}
    verdict: dict[str, bool] = {}
    for answer, ok in zip(answers, correct):
        if answer is None or not str(answer).strip():
            continue
        key = str(answer).strip()
        votes[key] = votes.get(key, 0) + 1
        verdict[key] = verdict.get(key, False) or bool(ok)
    if not votes:
        return False
    best = max(votes.values())
    winner = next(key for key in votes if votes[key] == best)  # dicts keep first-seen order
    return verdict[winner]


def sample_ks(n: int) -> list[int]:
    """The k reported for n samples per problem: 1, 2, 4, ... below n, and n."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def multi_sample_summary(
    groups: Sequence[Sequence[tuple[str | None, bool]]], n_boot: int = 2000, seed: int = 0
) -> dict:
    """Per-problem groups of (extracted answer, correct) samples -> mean accuracy over samples with a CI that
    resamples problems (samples of one problem are not independent), pass@k and maj@k (first k samples)."""
    if not groups:
        raise UserError("no problems to summarise")
    n = min(len(g) for g in groups)
    if n < 1:
        raise UserError("a problem has no samples")
    per_problem = [float(np.mean([ok for _, ok in g])) for g in groups]
    mean = bootstrap_ci(per_problem, n_boot=n_boot, seed=seed)
    ks = sample_ks(n)
    pass_k = {str(k): float(np.mean([pass_at_k(len(g), sum(ok for _, ok in g), k) for g in groups])) for k in ks}
    maj_k = {
        str(k): float(np.mean([majority_correct([a for a, _ in g[:k]], [ok for _, ok in g[:k]]) for g in groups]))
        for k in ks
    }
    return {
        "samples_per_problem": n,
        "n_problems": len(groups),
        "mean_accuracy": mean.estimate,
        "mean_accuracy_ci95": [mean.lo, mean.hi],
        "mean_accuracy_ci_method": "bootstrap over problems",
        "pass_at_k": pass_k,
        "maj_at_k": maj_k,
    }


def correctness_auc(stats_rows: list[dict[str, Any]], score: str, n_boot: int, seed: int) -> dict[str, Any]:
    """AUC of ``score`` (e.g. cumulative MI) for telling correct from incorrect traces, with a bootstrap CI."""
    rows = [r for r in stats_rows if r["correct"] is not None and r[score] is not None and math.isfinite(r[score])]
    n_pos = sum(1 for r in rows if r["correct"])
    result: dict[str, Any] = {"score": score, "n": len(rows), "n_correct": n_pos}
    if n_pos == 0 or n_pos == len(rows):
        result.update(auc=None, ci95=None, note="needs both correct and incorrect traces")
        return result
    est = auc_with_ci([r[score] for r in rows], [bool(r["correct"]) for r in rows], n_boot=n_boot, seed=seed)
    result.update(auc=est.estimate, ci95=[est.lo, est.hi])
    return result
