"""Bootstrap confidence intervals (reasonlens.eval.stats)."""

import numpy as np
import pytest
from scipy.stats import rankdata

from reasonlens.errors import UserError
from reasonlens.eval import auc, auc_with_ci, bootstrap_ci, paired_bootstrap_diff
from reasonlens.eval.stats import _average_ranks


def test_bootstrap_ci_of_a_proportion_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    correct = rng.random(400) < 0.3
    estimate, lo, hi = bootstrap_ci(correct, n_boot=4000, seed=0)
    assert estimate == pytest.approx(correct.mean())
    half_width = 1.96 * np.sqrt(estimate * (1 - estimate) / correct.size)
    assert lo < estimate < hi
    assert hi - lo == pytest.approx(2 * half_width, rel=0.15)
    assert (estimate - lo) == pytest.approx(half_width, rel=0.25)


def test_bootstrap_is_deterministic_given_the_seed():
    values = np.random.default_rng(2).normal(size=50)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_bootstrap_of_constant_or_single_values_has_zero_width():
    assert tuple(bootstrap_ci([1, 1, 1, 1])) == (1.0, 1.0, 1.0)
    assert tuple(bootstrap_ci([0.25])) == (0.25, 0.25, 0.25)


def test_bootstrap_chunking_does_not_change_the_estimate(monkeypatch):
    values = np.random.default_rng(5).random(1000)
    whole = bootstrap_ci(values, n_boot=300, seed=0)
    monkeypatch.setattr("reasonlens.eval.stats._CHUNK_ELEMENTS", 10_000)
    chunked = bootstrap_ci(values, n_boot=300, seed=0)
    assert chunked.estimate == whole.estimate
    assert chunked.lo == pytest.approx(whole.lo, abs=0.01)
    assert chunked.hi == pytest.approx(whole.hi, abs=0.01)


def test_bootstrap_rejects_bad_input():
    with pytest.raises(UserError, match="values is empty"):
        bootstrap_ci([])
    with pytest.raises(UserError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(UserError, match="one-dimensional"):
        bootstrap_ci([[1, 2], [3, 4]])
    with pytest.raises(UserError, match="alpha"):
        bootstrap_ci([1, 2], alpha=1.5)
    with pytest.raises(UserError, match="n_boot"):
        bootstrap_ci([1, 2], n_boot=0)


def test_paired_difference_exact_shift_and_identity():
    a = np.random.default_rng(6).random(100)
    assert tuple(paired_bootstrap_diff(a, a)) == (0.0, 0.0, 0.0)
    diff, lo, hi = paired_bootstrap_diff(a + 1, a)
    assert (diff, lo, hi) == pytest.approx((1.0, 1.0, 1.0))


def test_pairing_removes_shared_problem_difficulty():
    rng = np.random.default_rng(7)
    difficulty = rng.random(300) < 0.5
    method_a = difficulty | (rng.random(300) < 0.1)
    method_b = difficulty.copy()
    diff, lo, hi = paired_bootstrap_diff(method_a, method_b, seed=0)
    assert diff == pytest.approx(method_a.mean() - method_b.mean())
    assert lo > 0
    unpaired_a = bootstrap_ci(method_a, seed=0)
    unpaired_b = bootstrap_ci(method_b, seed=1)
    assert hi - lo < (unpaired_a.hi - unpaired_a.lo + unpaired_b.hi - unpaired_b.lo) / 2


def test_paired_difference_needs_aligned_inputs():
    with pytest.raises(UserError, match="aligned"):
        paired_bootstrap_diff([1, 0, 1], [1, 0])


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(8)
    scores = np.round(rng.normal(size=120), 1)  # rounding creates ties
    labels = rng.random(120) < 0.4
    positives, negatives = scores[labels], scores[~labels]
    pairwise = ((positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])).mean()
    assert auc(scores, labels) == pytest.approx(pairwise)
    estimate, lo, hi = auc_with_ci(scores, labels, n_boot=500)
    assert estimate == pytest.approx(pairwise)
    assert lo < estimate < hi


def test_auc_extremes_and_ties():
    labels = [0, 0, 1, 1]
    assert tuple(auc_with_ci([0.1, 0.2, 0.8, 0.9], labels, n_boot=200)) == (1.0, 1.0, 1.0)
    assert auc([0.9, 0.8, 0.2, 0.1], labels) == 0.0
    assert auc([0.5, 0.5, 0.5, 0.5], labels) == 0.5


def test_auc_ci_is_deterministic_and_rejects_single_class():
    scores = np.random.default_rng(9).random(60)
    labels = np.arange(60) % 3 == 0
    assert auc_with_ci(scores, labels, seed=1) == auc_with_ci(scores, labels, seed=1)
    with pytest.raises(UserError, match="both classes"):
        auc_with_ci(scores, np.ones(60, dtype=int))
    with pytest.raises(UserError, match="binary"):
        auc(scores, np.full(60, 2))
    with pytest.raises(UserError, match="same length"):
        auc(scores, labels[:10])


def test_average_ranks_match_scipy():
    rows = np.round(np.random.default_rng(10).normal(size=(7, 33)), 1)
    np.testing.assert_allclose(_average_ranks(rows), rankdata(rows, axis=1, method="average"))


@pytest.mark.parametrize(
    "successes,n,lo,hi",
    [
        # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score, no continuity correction)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # the cases the bootstrap got wrong: 0/4 and 16/16 (hand-computed, z = 1.959964)
        (0, 4, 0.0, 0.4899),
        (16, 16, 0.8064, 1.0),
    ],
)
def test_wilson_interval_matches_published_values(successes, n, lo, hi):
    from reasonlens.eval import wilson_ci

    estimate, low, high = wilson_ci(successes, n)
    assert estimate == pytest.approx(successes / n)
    assert low == pytest.approx(lo, abs=1e-4) and high == pytest.approx(hi, abs=1e-4)


def test_accuracy_interval_never_collapses_at_the_boundary():
    from reasonlens.eval import proportion_ci

    assert tuple(bootstrap_ci([0, 0, 0, 0])) == (0.0, 0.0, 0.0)  # why a proportion does not use the bootstrap
    estimate, lo, hi = proportion_ci([False] * 4)
    assert (estimate, lo) == (0.0, 0.0) and hi > 0.4
    with pytest.raises(UserError, match="0/1"):
        proportion_ci([0.5, 1.0])


def test_run_summary_uses_wilson(tmp_path, tiny_llama):
    from reasonlens.decode import DecodeConfig
    from reasonlens.runs import RunSpec, execute

    summary = execute(
        RunSpec(out=tmp_path / "r", model="tiny-llama", dataset="gsm8k", n=2, decode=DecodeConfig(max_new_tokens=2)),
        lm=tiny_llama,
        quiet=True,
    )
    assert summary["n_correct"] == 0 and summary["accuracy_ci_method"] == "wilson"
    assert summary["accuracy_ci95"][0] == 0.0 and summary["accuracy_ci95"][1] == pytest.approx(0.6576, abs=1e-4)


def test_pass_at_k_against_hand_computed_cases():
    from reasonlens.eval.stats import pass_at_k

    # 5 samples, 2 correct: pass@1 = 2/5; pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10; pass@4 = 1 (only 3 wrong)
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(5, 2, 4) == 1.0
    # 10 samples, 3 correct, k=5: 1 - C(7,5)/C(10,5) = 1 - 21/252
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    assert pass_at_k(4, 0, 4) == 0.0
    with pytest.raises(UserError):
        pass_at_k(4, 5, 1)


def test_majority_vote_and_multi_sample_summary():
    from reasonlens.eval.stats import majority_correct, multi_sample_summary

    assert majority_correct(["3", "4", "4", None], [True, False, False, False]) is False
    assert majority_correct(["3", "4", "3", "4"], [True, False, True, False]) is True  # tie: first seen wins
    assert majority_correct([None, None], [False, False]) is False
    groups = [
        [("1", True), ("2", False), ("1", True), ("2", False)],  # problem A: 2 of 4
        [("7", False), ("7", False), ("7", False), ("7", False)],
    ]  # problem B: 0 of 4
    summary = multi_sample_summary(groups, n_boot=200)
    assert summary["samples_per_problem"] == 4 and summary["n_problems"] == 2
    assert summary["mean_accuracy"] == pytest.approx(0.25)
    assert summary["pass_at_k"] == pytest.approx({"1": 0.25, "2": (1 - 1 / 6) / 2, "4": 0.5})
    assert summary["maj_at_k"] == pytest.approx({"1": 0.5, "2": 0.5, "4": 0.5})
