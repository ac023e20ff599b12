"""Decode-loop throughput on SmolLM2-135M: HF generate vs our loop vs our loop with 4-layer capture.

Every configuration is measured in the same process, interleaved over repeats, and reported as a ratio to
HF `generate` at the same batch size (the machine is noisy; only same-run ratios mean something).
Also prints the memory-bandwidth bound: weight bytes / measured copy bandwidth.

    python benchmarks/bench_decode.py [--tokens 64] [--repeats 3] [--batches 1,8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from reasonlens.data import load_problems, render_prompt
from reasonlens.decode import DecodeConfig, decode
from reasonlens.decode.capture import HiddenStateCapture
from reasonlens.models import load


def copy_bandwidth(n_bytes: int = 512 * 2**20, repeats: int = 5) -> float:
    """Bytes per second of a large tensor copy (read + write counted once each)."""
    src = torch.empty(n_bytes // 4, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * n_bytes / best


def run_hf(lm, prompts, tokens):
    enc = lm.tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = lm.model.generate(**enc, max_new_tokens=tokens, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
    eos = set(lm.eos_token_ids())
    count = 0
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        count += next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
    return count


def run_ours(lm, prompts, tokens, capture_layers=None):
    plugins = []
    if capture_layers:
        plugins.append(HiddenStateCapture(capture_layers, lambda row, tensors: None))
    gens = decode(lm, prompts, DecodeConfig(max_new_tokens=tokens, batch_size=len(prompts)), plugins=plugins)
    return sum(g.n_tokens for g in gens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    torch.set_num_threads(2)
    lm = load("smollm2-135m")
    problems = load_problems("gsm8k", n=8)
    all_prompts = [render_prompt(p, "deepseek-math") for p in problems]
    layers = [7, 15, 23, 29]
    weight_bytes = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    bandwidth = copy_bandwidth()
    print(f"weights {weight_bytes / 2**20:.0f} MiB, copy bandwidth {bandwidth / 2**30:.1f} GiB/s, "
          f"bound {bandwidth / weight_bytes:.1f} forward passes/s")
    for batch in [int(b) for b in args.batches.split(",")]:
        prompts = all_prompts[:batch]
        variants = {"hf_generate": lambda: run_hf(lm, prompts, args.tokens),
                    "ours": lambda: run_ours(lm, prompts, args.tokens),
                    "ours+capture4": lambda: run_ours(lm, prompts, args.tokens, layers)}
        run_ours(lm, prompts, 4)  # warm-up
        rates: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.repeats):
            for name, fn in variants.items():
                t = time.perf_counter()
                n = fn()
                rates[name].append(n / (time.perf_counter() - t))
        base = statistics.median(rates["hf_generate"])
        bound = batch * bandwidth / weight_bytes
        print(f"batch {batch}: memory-bandwidth bound {bound:.0f} tok/s")
        for name, values in rates.items():
            med = statistics.median(values)
            print(f"  {name:14s} {med:8.1f} tok/s   ratio vs hf_generate {med / base:5.2f}x")


if __name__ == "__main__":
    main()
