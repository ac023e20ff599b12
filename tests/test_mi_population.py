"""Population HSIC / CKA / permutation tests / aligned trajectories against brute-force definitions."""

import itertools

import pytest
import torch

from reasonlens.errors import UserError
from reasonlens.mi.population import (
    GramStatistic,
    gram,
    hsic,
    hsic_from_grams,
    linear_cka,
    median_heuristic,
    permutation_test,
    permutation_test_result,
)
from reasonlens.mi.trajectory import AlignedStates, population_trajectory


def sample_pair(n=40, d=6, dependent=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    if dependent:
        y = x @ torch.randn(d, 3, generator=gen, dtype=torch.float64) + 0.1 * torch.randn(
            n, 3, generator=gen, dtype=torch.float64
        )
    else:
        y = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return x, y


def test_biased_hsic_matches_explicit_centring_matrix():
    x, y = sample_pair(n=12)
    k, l = gram(x, bandwidth=1.3), gram(y, bandwidth=2.0)
    n = 12
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    expected = float(torch.trace(k @ h @ l @ h)) / (n - 1) ** 2
    assert hsic_from_grams(k, l, unbiased=False) == pytest.approx(expected, rel=1e-12)


def test_unbiased_hsic_equals_the_u_statistic():
    x, y = sample_pair(n=7, seed=3)
    k, l = gram(x, "gaussian", 1.5), gram(y, "gaussian", 1.5)
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(7), 4):
        total += float(k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q])
        count += 1
    assert hsic(x, y, bandwidth=1.5, unbiased=True) == pytest.approx(total / count, rel=1e-10)


def test_median_heuristic_is_median_pairwise_distance():
    x, _ = sample_pair(n=9)
    assert median_heuristic(x) == pytest.approx(float(torch.pdist(x).median()), rel=1e-10)


def test_linear_cka_properties():
    x, y = sample_pair(n=30, d=5)
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, 3.0 * x @ q + 7.0) == pytest.approx(1.0, abs=1e-10)  # rotation, scale, shift
    xc, yc = x - x.mean(0), y - y.mean(0)
    feature_form = float((yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm()))
    assert linear_cka(x, y) == pytest.approx(feature_form, rel=1e-10)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), rel=1e-12)


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
def test_dependence_detected_and_independence_not(kernel):
    xd, yd = sample_pair(dependent=True, seed=1)
    xi, yi = sample_pair(dependent=False, seed=2)
    stat = GramStatistic("hsic", kernel=kernel)
    assert stat(xd, yd) > 5 * abs(stat(xi, yi))
    assert permutation_test(stat, xd, yd, n_permutations=99, seed=0) == pytest.approx(0.01)
    assert permutation_test(stat, xi, yi, n_permutations=99, seed=0) > 0.05


def test_permutation_fast_path_equals_generic_callable():
    x, y = sample_pair(n=15, dependent=False, seed=4)
    fast = permutation_test_result(hsic, x, y, n_permutations=30, seed=7)
    slow = permutation_test_result(lambda a, b: hsic(a, b), x, y, n_permutations=30, seed=7)
    assert fast.p_value == slow.p_value
    assert fast.statistic == pytest.approx(slow.statistic, rel=1e-12)
    assert permutation_test("linear_cka", x, y, 30, seed=7) == permutation_test(linear_cka, x, y, 30, seed=7)
    generic_cka = permutation_test(lambda a, b: GramStatistic("cka")(a, b), x, y, 30, seed=7)
    assert permutation_test("cka", x, y, 30, seed=7) == generic_cka  # "cka": Gaussian-kernel CKA


def test_input_errors():
    x, y = sample_pair(n=10)
    with pytest.raises(UserError, match="same number of samples"):
        hsic(x, y[:5])
    with pytest.raises(UserError, match="kernel"):
        hsic(x, y, kernel="rbf")
    with pytest.raises(UserError, match="n_permutations"):
        permutation_test(hsic, x, y, n_permutations=0)


def test_aligned_states_relative_bins_average_each_bin():
    acc = AlignedStates(align="relative", n_bins=2)
    trace = torch.arange(8, dtype=torch.float32).reshape(4, 2)  # rows [0,1],[2,3],[4,5],[6,7]
    acc.add(0, trace)
    ids, states = acc.samples_at(0)
    assert ids == [0] and states.tolist() == [[1.0, 2.0]]
    assert acc.samples_at(1)[1].tolist() == [[5.0, 6.0]]


def test_trajectory_rises_where_states_carry_the_gold():
    gen = torch.Generator().manual_seed(0)
    n, d = 30, 8
    golds = torch.randn(n, d, generator=gen)
    traces = []
    for i in range(n):
        length = 10 + i % 5
        states = torch.randn(length, d, generator=gen)
        half = length // 2
        states[half:] = golds[i] + 0.05 * torch.randn(length - half, d, generator=gen)
        traces.append(states)
    points = population_trajectory(traces, golds, align="relative", n_bins=2, statistic=GramStatistic("cka"))
    assert [p.position for p in points] == [0, 1] and all(p.n == n for p in points)
    assert points[1].statistic > 0.9 > 0.5 > points[0].statistic
    by_step = population_trajectory(traces, golds, align="step", steps=[0, 13], n_permutations=49)
    assert by_step[0].position == 0 and by_step[0].p_value > 0.05
    assert by_step[1].position == 13 and by_step[1].n == 6 and by_step[1].p_value == pytest.approx(0.02)


def test_aligned_states_across_storage_blocks_and_short_traces():
    acc = AlignedStates(align="step", steps=[0, 3], block_samples=2)
    for sample in (5, 1, 9):  # three samples: two storage blocks
        length = 4 if sample != 9 else 2  # sample 9 has no step 3
        acc.add(sample, torch.full((length, 3), float(sample)) + torch.arange(length)[:, None])
    ids, states = acc.samples_at(3)
    assert ids == [1, 5] and states[:, 0].tolist() == [4.0, 8.0]
    ids, states = acc.samples_at(0)
    assert ids == [1, 5, 9] and states[:, 0].tolist() == [1.0, 5.0, 9.0]
    assert acc.samples_at(2) == ([], None)
