"""Population dependence estimators over N paired samples (SPEC A2, the "sound alternative").

Unlike the paper score, which compares two single vectors coordinate by coordinate, these treat each
problem ``i`` as one sample ``(x_i, y_i)`` and estimate dependence between the two random vectors:
HSIC with a Gaussian (median-heuristic bandwidth) or linear kernel, linear CKA, and permutation-test
p-values. All statistics are computed from the ``N x N`` Gram matrices, so a permutation only reorders
one Gram matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from reasonlens.errors import UserError

Bandwidth = float | str


def _as_samples(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() == 1:
        x = x.unsqueeze(1)
    if x.dim() != 2:
        raise UserError(f"{name} must be [N, d] paired samples, got shape {tuple(x.shape)}")
    return x.detach().to(torch.float64).cpu()


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _as_samples(x, "X"), _as_samples(y, "Y")
    if x.shape[0] != y.shape[0]:
        raise UserError(f"X and Y must have the same number of samples, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[0] < 2:
        raise UserError(f"need at least 2 paired samples, got {x.shape[0]}")
    return x, y


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances of the rows of ``x [N, d]`` (clamped at 0)."""
    sq = (x * x).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    d2.fill_diagonal_(0.0)
    return d2.clamp_min(0.0)


def median_heuristic(x: torch.Tensor) -> float:
    """Median pairwise Euclidean distance between rows (lower median over ``i < j``); 1.0 if all equal."""
    d2 = squared_distances(_as_samples(x, "X"))
    n = d2.shape[0]
    upper = d2[torch.triu_indices(n, n, offset=1).unbind()]
    med = float(upper.median().sqrt())
    return med if med > 0 else 1.0


def gram(x: torch.Tensor, kernel: str = "gaussian", bandwidth: Bandwidth = "median") -> torch.Tensor:
    """Kernel Gram matrix ``[N, N]`` of the rows of ``x``; Gaussian ``exp(-||a-b||^2 / (2 s^2))`` or linear."""
    x = _as_samples(x, "X")
    if kernel == "linear":
        return x @ x.T
    if kernel != "gaussian":
        raise UserError(f"kernel must be 'gaussian' or 'linear', got {kernel!r}")
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise UserError(f"bandwidth must be a positive number or 'median', got {bandwidth!r}")
        sigma = median_heuristic(x)
    else:
        if not bandwidth > 0:
            raise UserError(f"bandwidth must be a positive number or 'median', got {bandwidth!r}")
        sigma = float(bandwidth)
    return torch.exp(-squared_distances(x) / (2.0 * sigma * sigma))


def _centre(k: torch.Tensor) -> torch.Tensor:
    """``H K H`` without forming ``H``."""
    return k - k.mean(dim=0, keepdim=True) - k.mean(dim=1, keepdim=True) + k.mean()


def hsic_from_grams(k: torch.Tensor, l: torch.Tensor, unbiased: bool = True) -> float:
    """HSIC from two Gram matrices.

    Biased (Gretton et al. 2005): ``tr(K H L H) / (n - 1)^2``. Unbiased (Song et al. 2012), needs n >= 4:
    ``[tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n (n-3))`` with zeroed diagonals.
    """
    n = k.shape[0]
    if not unbiased:
        return float((_centre(k) * l).sum() / (n - 1) ** 2)
    if n < 4:
        raise UserError(f"unbiased HSIC needs at least 4 samples, got {n}")
    kt = k.clone().fill_diagonal_(0.0)
    lt = l.clone().fill_diagonal_(0.0)
    k_sum, l_sum = kt.sum(), lt.sum()
    trace_term = (kt * lt).sum()  # tr(K~ L~), both symmetric
    cross = kt.sum(dim=0) @ lt.sum(dim=1)  # 1' K~ L~ 1
    value = trace_term + k_sum * l_sum / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)
    return float(value / (n * (n - 3)))


def cka_from_grams(k: torch.Tensor, l: torch.Tensor) -> float:
    """Centred kernel alignment ``<HKH, HLH> / (||HKH|| ||HLH||)``; 0 when either side is constant."""
    kc, lc = _centre(k), _centre(l)
    denom = float(kc.norm() * lc.norm())
    return float((kc * lc).sum()) / denom if denom > 0 else 0.0


def hsic(
    X: torch.Tensor,
    Y: torch.Tensor,
    kernel: str = "gaussian",
    bandwidth: Bandwidth = "median",
    unbiased: bool = True,
) -> float:
    """HSIC between paired samples ``X [N, dx]`` and ``Y [N, dy]`` (each side gets its own bandwidth)."""
    x, y = _check_pair(X, Y)
    return hsic_from_grams(gram(x, kernel, bandwidth), gram(y, kernel, bandwidth), unbiased=unbiased)


def linear_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) between paired samples ``X [N, dx]`` and ``Y [N, dy]``, in [0, 1]."""
    x, y = _check_pair(X, Y)
    return cka_from_grams(x @ x.T, y @ y.T)


@dataclass(frozen=True)
class GramStatistic:
    """A statistic of two Gram matrices; lets the permutation test reorder a Gram instead of recomputing.

    ``name``: ``"hsic"`` (with ``kernel``/``bandwidth``/``unbiased``), ``"cka"`` (centred kernel alignment
    with ``kernel``) or ``"linear_cka"`` (always the linear kernel).
    """

    name: str
    kernel: str = "gaussian"
    bandwidth: Bandwidth = "median"
    unbiased: bool = True

    def grams(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kernel = "linear" if self.name == "linear_cka" else self.kernel
        return gram(x, kernel, self.bandwidth), gram(y, kernel, self.bandwidth)

    def from_grams(self, k: torch.Tensor, l: torch.Tensor) -> float:
        if self.name == "hsic":
            return hsic_from_grams(k, l, unbiased=self.unbiased)
        if self.name in ("cka", "linear_cka"):
            return cka_from_grams(k, l)
        raise UserError(f"unknown statistic {self.name!r}: expected 'hsic', 'cka' or 'linear_cka'")

    def __call__(self, X: torch.Tensor, Y: torch.Tensor) -> float:
        x, y = _check_pair(X, Y)
        return self.from_grams(*self.grams(x, y))


StatFn = Callable[[torch.Tensor, torch.Tensor], float] | GramStatistic | str


def _as_gram_statistic(stat_fn: StatFn) -> GramStatistic | None:
    if isinstance(stat_fn, GramStatistic):
        return stat_fn
    if isinstance(stat_fn, str):
        return GramStatistic(stat_fn)
    if stat_fn is hsic:
        return GramStatistic("hsic")
    if stat_fn is linear_cka:
        return GramStatistic("linear_cka")
    return None


@dataclass(frozen=True)
class PermutationResult:
    statistic: float
    p_value: float
    n_permutations: int


def permutation_test_result(
    stat_fn: StatFn, X: torch.Tensor, Y: torch.Tensor, n_permutations: int = 1000, seed: int = 0
) -> PermutationResult:
    """Observed statistic and one-sided permutation p-value ``(1 + #{null >= observed}) / (1 + n)``.

    The null reorders the rows of ``Y`` relative to ``X``. ``stat_fn`` is any ``(X, Y) -> float``; for
    ``hsic``/``linear_cka``/a :class:`GramStatistic`/``"hsic"``/``"cka"`` the Gram matrices are computed once.
    """
    if n_permutations < 1:
        raise UserError(f"n_permutations must be >= 1, got {n_permutations}")
    x, y = _check_pair(X, Y)
    gen = torch.Generator().manual_seed(int(seed))
    n = x.shape[0]
    fast = _as_gram_statistic(stat_fn)
    if fast is not None:
        k, l = fast.grams(x, y)
        observed = fast.from_grams(k, l)
        null = []
        for _ in range(n_permutations):
            perm = torch.randperm(n, generator=gen)
            null.append(fast.from_grams(k, l[perm][:, perm]))
    else:
        assert callable(stat_fn)
        observed = float(stat_fn(x, y))
        null = [float(stat_fn(x, y[torch.randperm(n, generator=gen)])) for _ in range(n_permutations)]
    exceed = sum(1 for v in null if v >= observed)
    return PermutationResult(observed, (1 + exceed) / (1 + n_permutations), n_permutations)


def permutation_test(
    stat_fn: StatFn, X: torch.Tensor, Y: torch.Tensor, n_permutations: int = 1000, seed: int = 0
) -> float:
    """Permutation-test p-value for dependence between ``X`` and ``Y`` (see :func:`permutation_test_result`)."""
    return permutation_test_result(stat_fn, X, Y, n_permutations, seed).p_value
