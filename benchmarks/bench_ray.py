"""Ray executor vs one process on tiny-llama: the same run, measured in the same process.

One process decodes the run with `--executor local` (at each of `--local-threads` torch thread counts; the
fastest is the baseline); then a local
Ray cluster with W workers (one model replica each, `threads` torch threads each) decodes the same run into
another directory. Reported: the one-time cost of starting the cluster and the replicas, the run time of
each executor with warm replicas, their ratio, and whether the results are token-identical.

On a machine with C cores, W workers can at best be min(W, C / threads) times faster than one process, and
on a tiny model the per-chunk overhead (grading, file appends, Ray calls) is a large share: read the ratio as
what sharding costs or gains at this size, not as a GPU projection (docs/scaling.md has the paper model).

    python benchmarks/bench_ray.py [--n 16] [--tokens 32] [--batch-size 4] [--workers 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from reasonlens.decode import DecodeConfig
from reasonlens.models import load
from reasonlens.runs import RunDir, RunSpec
from reasonlens.runs.executors import LocalExecutor, RayConfig, RayExecutor


def comparable(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "crc")} for r in RunDir(path).results()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--layers", default="-1", help="captured layers ('none' for generation only)")
    parser.add_argument(
        "--local-threads",
        default="1",
        help="torch thread counts of the one-process baseline, "
        "e.g. 1,2 (on a loaded machine more threads than free cores is far slower)",
    )
    args = parser.parse_args()
    import ray

    cores = os.cpu_count() or 1
    local_threads = [int(t) for t in args.local_threads.split(",")]
    root = Path(tempfile.mkdtemp(prefix="bench_ray_"))

    def spec(out: Path) -> RunSpec:
        return RunSpec(
            out=out,
            model="tiny-llama",
            dataset="gsm8k",
            n=args.n,
            layers=None if args.layers == "none" else args.layers,
            decode=DecodeConfig(max_new_tokens=args.tokens, batch_size=args.batch_size),
        )

    lm = load("tiny-llama")
    local = LocalExecutor()
    started = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    sharded = RayExecutor(RayConfig(workers=args.workers))
    sharded.actors("tiny-llama", "fp32", "cpu", False)
    startup = time.perf_counter() - started

    names = [f"local{t}" for t in local_threads] + ["ray"]
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(args.repeats):  # interleaved: the machine is shared and noisy
        for name in names:
            out = root / f"{name}-{repeat}"
            t = time.perf_counter()
            if name == "ray":
                sharded.run(spec(out), quiet=True)
            else:
                torch.set_num_threads(int(name[5:]))
                local.run(spec(out), lm=lm, quiet=True)
            times[name].append(time.perf_counter() - t)
    identical = all(comparable(root / f"{name}-0") == comparable(root / "ray-0") for name in names)
    tokens = sum(r["n_tokens"] for r in RunDir(root / "ray-0").results())
    sharded.close()
    ray.shutdown()
    shutil.rmtree(root, ignore_errors=True)

    best = {k: min(v) for k, v in times.items()}
    baseline = min((n for n in names if n != "ray"), key=lambda n: best[n])
    print(
        f"tiny-llama, n={args.n} x {args.tokens} tokens, batch {args.batch_size}, layers {args.layers}; "
        f"{cores} cores, load average {os.getloadavg()[0]:.1f}"
    )
    for name in names:
        label = (
            f"ray x{args.workers} workers (1 thread each)"
            if name == "ray"
            else f"one process ({name[5:]} thread{'s' if name[5:] != '1' else ''})"
        )
        print(
            f"{label}: best {best[name]:.2f} s (runs {', '.join(f'{t:.2f}' for t in times[name])}), "
            f"{tokens / best[name]:.0f} tok/s"
        )
    print(f"one-time ray cluster + replica start: {startup:.1f} s")
    print(
        f"speed-up ray / fastest one process ({baseline}), warm replicas, best of {args.repeats}: "
        f"{best[baseline] / best['ray']:.2f}x; median {statistics.median(times[baseline]) / statistics.median(times['ray']):.2f}x; "
        f"including start-up once: {best[baseline] / (best['ray'] + startup):.2f}x"
    )
    print(f"results identical to the one-process run: {identical}")
    if not identical:
        raise SystemExit("ray results differ from the one-process run")


if __name__ == "__main__":
    main()
