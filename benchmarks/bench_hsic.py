"""Paper-mode HSIC: the fast exact estimator vs the dense float64 formula, measured in the same run.

Prints, per hidden size d, the dense per-step time (the formula as the reference computes it: two m x m
kernels, centring products and inverses per step), the fast per-step time over a 512-step trace, their
ratio, and the largest relative difference on the steps where both ran. Data: LLM-like step states (a
Gaussian bulk plus a few massive-activation coordinates in the hundreds).

    python benchmarks/bench_hsic.py [--dims 576,1536,4096] [--steps 512] [--dense-steps 1] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from reasonlens.mi import PaperHSIC


def llm_like(steps: int, d: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(steps, d, generator=gen) * 1.5
    dims = torch.randperm(d, generator=gen)[:6]
    centres = torch.tensor([320.0, -260.0, 140.0, 610.0, -90.0, 45.0])
    h[:, dims] = centres + 25.0 * torch.randn(steps, 6, generator=gen)
    return h


def dense_step(x: torch.Tensor, y: torch.Tensor, sigma: float = 50.0, eps: float = 1e-5) -> float:
    """The reference formula in float64, y side recomputed every step as the reference does."""
    m = x.numel()
    centring = torch.eye(m, dtype=torch.float64) - 1.0 / m
    eye = torch.eye(m, dtype=torch.float64)

    def r(v: torch.Tensor) -> torch.Tensor:
        v = v.to(torch.float64)
        kc = torch.exp(-((v[:, None] - v[None, :]) ** 2) / (2 * sigma**2)) @ centring
        return kc @ torch.linalg.inv(kc + eps * m * eye)

    return float((r(x) * r(y).T).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="576,1536,4096")
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--dense-steps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    default_threads = torch.get_num_threads()
    print(
        f"torch threads: {default_threads} (fast trace also timed with 1 thread: small ops suffer from "
        "thread hand-offs on a busy machine)"
    )
    print(
        f"{'d':>6} {'dense s/step':>13} {'fast ms/step':>13} {'ratio':>9} {'trace s':>8} {'1-thr trace s':>14} {'(cpu s)':>8} "
        f"{'rank x/y':>9} {'max rel err':>12}"
    )
    for d in [int(v) for v in args.dims.split(",")]:
        h = llm_like(args.steps, d, seed=d)
        y = llm_like(1, d, seed=d + 1)[0]
        start = time.perf_counter()
        estimator = PaperHSIC(y)
        fast = estimator(h)
        trace_s = time.perf_counter() - start
        torch.set_num_threads(1)
        start, cpu_start = time.perf_counter(), time.process_time()
        PaperHSIC(y)(h)
        single_s, single_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        torch.set_num_threads(default_threads)
        n_dense = min(args.dense_steps, args.steps)
        start = time.perf_counter()
        dense = [dense_step(h[t], y) for t in range(n_dense)]
        dense_s = (time.perf_counter() - start) / n_dense
        err = max(abs(float(fast[t]) - dense[t]) / abs(dense[t]) for t in range(n_dense))
        per_step = min(trace_s, single_s) / args.steps
        print(
            f"{d:>6} {dense_s:>13.3f} {per_step * 1e3:>13.3f} {dense_s / per_step:>9.0f} {trace_s:>8.2f} "
            f"{single_s:>14.2f} {single_cpu:>8.2f} {estimator.max_step_rank:>4}/{estimator.y_rank:<4} {err:>12.2e}"
        )
    print(
        "ratio = dense s/step / fast s/step (wall clock, same run), fast taken as the better thread setting;"
        " cpu s = process CPU time of the 1-thread trace (robust to a busy machine)"
    )


if __name__ == "__main__":
    main()
