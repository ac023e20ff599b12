"""Scale of `reasonlens mi`: N synthetic traces x 512 steps x d=4096 shards, streamed, under 4 GB RSS.

Writes a synthetic run directory (fp16 state shards with LLM-like massive activations, results.jsonl
with checksums, gold representations cached in RUN/mi/golds.safetensors so no model is needed), then runs
the same `analyze_run` the CLI uses and prints wall time, time per trace and the peak resident memory of
the analysis (measured in a fresh subprocess, so shard writing does not count). Only the population
reductions (n_bins x d float32 per trace, 164 KB at d=4096) grow with the number of traces; everything
else is streamed, so `--limit` runs on a big synthetic run show the per-trace cost and the RSS plateau.

    python benchmarks/bench_mi_scale.py [--n 100] [--steps 512] [--d 4096] [--dir PATH] [--keep]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

SYNTHETIC_MODEL = "synthetic-bench"


def write_run(root: Path, n: int, steps: int, d: int, seed: int = 0) -> None:
    from reasonlens.analysis.pipeline import GoldConfig
    from reasonlens.data import load_problems
    from reasonlens.runs import RunDir
    from reasonlens.runs.io import atomic_write_json

    problems = load_problems("gsm8k", n=n)
    if len(problems) < n:
        raise SystemExit(f"--n {n}: gsm8k has only {len(problems)} problems")
    run = RunDir(root)
    run.start(
        {
            "command": "generate",
            "model": SYNTHETIC_MODEL,
            "dataset": "gsm8k",
            "split": "test",
            "offset": 0,
            "n": n,
            "template": "raw",
            "decode": {"max_new_tokens": steps},
            "layers": [31],
            "hidden_size": d,
            "dtype": "fp16",
            "seed": seed,
        }
    )
    gen = torch.Generator().manual_seed(seed)
    massive = torch.randperm(d, generator=gen)[:6]
    golds = {}
    with run.appender() as appender:
        for i, problem in enumerate(problems):
            gold = torch.randn(d, generator=gen)
            gold[massive] = torch.tensor([320.0, -260.0, 140.0, 610.0, -90.0, 45.0])
            states = 0.6 * torch.randn(steps, d, generator=gen) + 0.4 * gold
            states[:, massive] = gold[massive] + 25.0 * torch.randn(steps, 6, generator=gen)
            informative = torch.randperm(steps, generator=gen)[: max(1, steps // 40)]  # ~2.5% peak-like steps
            states[informative] = gold + 0.2 * torch.randn(len(informative), d, generator=gen)
            token_ids = torch.randint(0, 32000, (steps,), generator=gen)
            run.write_states(
                i,
                {"token_ids": token_ids, "layer.31": states.half()},
                {"id": problem.id, "index": str(i), "layers": "31"},
            )
            golds[f"{i}.31"] = gold.float()
            appender.append(
                [
                    {
                        "index": i,
                        "id": problem.id,
                        "prompt": "",
                        "completion": "",
                        "extracted": None,
                        "gold": problem.answer,
                        "correct": bool(i % 3),
                        "n_tokens": steps,
                        "seconds": 0.0,
                        "stop_reason": "budget",
                        "status": "ok",
                        "error": None,
                    }
                ]
            )
    (root / "mi").mkdir(exist_ok=True)
    identity = GoldConfig().identity(SYNTHETIC_MODEL)
    save_file(golds, str(root / "mi" / "golds.safetensors"), metadata=identity)
    atomic_write_json(root / "summary.json", {"n": n, "n_correct": sum(1 for i in range(n) if i % 3), "accuracy": None})


def analyse(root: Path, limit: int | None) -> None:
    """Child process: run the analysis and report time and peak RSS as JSON on the last stdout line."""
    from reasonlens.analysis.pipeline import MIConfig, OutputConfig, analyze_run
    from reasonlens.analysis.stages import PopulationConfig

    start = time.perf_counter()
    config = MIConfig(
        population=PopulationConfig(n_permutations=100),
        output=OutputConfig(decode_argmax=False),
        n_boot=1000,
        limit=limit,
    )
    summary = analyze_run(root, config, quiet=True)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = usage.ru_maxrss / 1024
    layer = summary["per_layer"]["31"]
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "peak_rss_mb": peak_mb,
                "n": summary["n"],
                "mean_mi": layer["stats"]["mean"]["mean"],
                "peaks_per_trace": layer["stats"]["n_peaks"]["mean"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--dir", type=Path, default=None, help="Run directory to create (default: a temp dir).")
    parser.add_argument("--keep", action="store_true", help="Keep the synthetic run directory.")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="Analyse only the first N traces of the run (memory is flat per trace; see docstring).",
    )
    parser.add_argument("--analyse-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.analyse_only is not None:
        analyse(args.analyse_only, args.limit)
        return
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_mi_scale_")) / "run"
    try:
        if (root / "manifest.json").is_file():
            print(f"reusing the synthetic run in {root}")
        else:
            start = time.perf_counter()
            write_run(root, args.n, args.steps, args.d)
            print(f"wrote {args.n} shards ({args.steps} x {args.d} fp16) in {time.perf_counter() - start:.1f} s")
        command = [sys.executable, __file__, "--analyse-only", str(root)]
        if args.limit is not None:
            command += ["--limit", str(args.limit)]
        child = subprocess.run(command, capture_output=True, text=True)
        if child.returncode != 0:
            sys.stderr.write(child.stderr)
            raise SystemExit(child.returncode)
        result = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"analysed {result['n']} traces in {result['seconds']:.1f} s wall, {result['cpu_seconds']:.1f} s CPU "
            f"({result['seconds'] / result['n']:.2f} s/trace wall), peak RSS {result['peak_rss_mb']:.0f} MB "
            f"(limit 4096 MB: {'ok' if result['peak_rss_mb'] < 4096 else 'EXCEEDED'})"
        )
        print(f"mean MI {result['mean_mi']:.4f}, peaks per trace {result['peaks_per_trace']:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(root.parent if args.dir is None else root, ignore_errors=True)


if __name__ == "__main__":
    main()
