"""The fast paper-mode HSIC against a dense float64 oracle of the reference formula (SPEC A2)."""

import pytest
import torch

from reasonlens.errors import UserError
from reasonlens.mi import LowRankConfig, PaperHSIC, median_bandwidth, paper_hsic, paper_hsic_grid


def dense_r(v: torch.Tensor, sigma: float, eps: float) -> torch.Tensor:
    """R = Kc (Kc + eps m I)^-1 with Kc = K H, written exactly as the formula reads."""
    v = v.to(torch.float64)
    m = v.numel()
    k = torch.exp(-((v[:, None] - v[None, :]) ** 2) / (2.0 * sigma**2))
    centring = torch.eye(m, dtype=torch.float64) - torch.full((m, m), 1.0 / m, dtype=torch.float64)
    kc = k @ centring
    return kc @ torch.linalg.inv(kc + eps * m * torch.eye(m, dtype=torch.float64))


def oracle(x: torch.Tensor, y: torch.Tensor, sigma_x: float = 50.0, sigma_y: float | None = None, eps: float = 1e-5):
    rx = dense_r(x, sigma_x, eps)
    ry = dense_r(y, sigma_x if sigma_y is None else sigma_y, eps)
    return float((rx * ry.T).sum())


def llm_like(steps: int, d: int, seed: int) -> torch.Tensor:
    """Gaussian bulk plus a few massive-activation coordinates in the hundreds, like LLM hidden states."""
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(steps, d, generator=gen) * 1.5
    dims = torch.randperm(d, generator=gen)[:4]
    centres = torch.tensor([320.0, -260.0, 140.0, 610.0])
    h[:, dims] = centres + 25.0 * torch.randn(steps, 4, generator=gen)
    return h


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("d", [96, 384])
def test_matches_dense_oracle_with_outliers(d):
    h = llm_like(3, d, seed=d)
    y = llm_like(1, d, seed=d + 1)[0]
    fast = paper_hsic(h, y)
    assert fast.dtype == torch.float64 and fast.shape == (3,)
    for t in range(3):
        assert rel_err(float(fast[t]), oracle(h[t], y)) <= 1e-6


def test_matches_oracle_on_wide_range_and_duplicates():
    # values spanning +-1000 (20 sigma) with fp16-style repeats stress the adaptive rank
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(256, generator=gen) * 300).half().float()
    x[:50] = x[0]
    y = torch.randn(256, generator=gen) * 5
    y[:3] = torch.tensor([900.0, -950.0, 400.0])
    assert rel_err(float(paper_hsic(x, y)), oracle(x, y)) <= 1e-6


def test_other_sigma_and_eps_match_oracle():
    h = llm_like(2, 128, seed=5)
    y = llm_like(1, 128, seed=6)[0]
    got = paper_hsic(h, y, sigma=7.0, eps=1e-3)
    for t in range(2):
        assert rel_err(float(got[t]), oracle(h[t], y, sigma_x=7.0, eps=1e-3)) <= 1e-6


def test_median_heuristic_matches_pdist_median_and_oracle():
    h = llm_like(2, 200, seed=8)
    y = llm_like(1, 200, seed=9)[0]
    for v in (y, h[0]):
        expected = torch.pdist(v.double()[:, None]).median()  # lower median, like ours
        assert float(median_bandwidth(v)) == pytest.approx(float(expected), rel=1e-12)
    got = paper_hsic(h, y, sigma="median")
    sy = float(median_bandwidth(y))
    for t in range(2):
        sx = float(median_bandwidth(h[t]))
        assert rel_err(float(got[t]), oracle(h[t], y, sigma_x=sx, sigma_y=sy)) <= 1e-6


def test_dense_fallback_and_dense_method_agree_with_fast_path():
    h = llm_like(3, 128, seed=11)
    y = llm_like(1, 128, seed=12)[0]
    fast = PaperHSIC(y)
    forced = PaperHSIC(y, config=LowRankConfig(max_rank_fraction=0.01))  # rank cap 1: everything dense
    dense = PaperHSIC(y, method="dense")
    a, b, c = fast(h), forced(h), dense(h)
    assert fast.dense_steps == 0 and forced.dense_steps == 3 and dense.dense_steps == 3
    torch.testing.assert_close(a, b, rtol=1e-8, atol=0)
    torch.testing.assert_close(a, c, rtol=1e-8, atol=0)


def test_identical_vectors_score_high_independent_low_and_symmetric():
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(256, generator=gen) * 100
    noise = torch.randn(256, generator=gen) * 100
    same = float(paper_hsic(y, y))
    independent = float(paper_hsic(noise, y))
    assert same > 10 * independent
    assert float(paper_hsic(noise, y)) == pytest.approx(float(paper_hsic(y, noise)), rel=1e-9)
    # a noisy copy sits in between
    copy = float(paper_hsic(y + 20 * torch.randn(256, generator=gen), y))
    assert independent < copy < same


def test_y_side_cached_once_gives_same_as_fresh_per_step():
    h = llm_like(5, 160, seed=21)
    y = llm_like(1, 160, seed=22)[0]
    cached = PaperHSIC(y)
    batch = cached(h)
    one_by_one = torch.stack([paper_hsic(h[t], y) for t in range(5)])
    torch.testing.assert_close(batch, one_by_one, rtol=1e-12, atol=0)
    torch.testing.assert_close(cached(h[2:4]), batch[2:4], rtol=1e-12, atol=0)


def test_shapes_grid_and_input_errors():
    h = llm_like(4, 64, seed=2)
    y = llm_like(1, 64, seed=3)[0]
    assert paper_hsic(h[0], y).shape == ()
    grid = paper_hsic_grid(h, y, sigmas=(50.0, 400.0))
    assert grid.shape == (2, 4)
    torch.testing.assert_close(grid[1], paper_hsic(h, y, sigma=400.0))
    with pytest.raises(UserError, match="coordinates"):
        paper_hsic(h[:, :10], y)
    with pytest.raises(UserError, match="sigma"):
        paper_hsic(h, y, sigma=-1.0)
    with pytest.raises(UserError, match="sigma"):
        paper_hsic(h, y, sigma="mean")
