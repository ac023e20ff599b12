"""Recurrent-depth model: adaptive exit vs fixed r_max at batch 1/8/32, cached decoding, cache compression.

Prints ratios against baselines measured in the same run (no absolute thresholds, no assertions).

Adaptive exit vs fixed depth: wall time per generated token of cached greedy decoding (prefill untimed, then
`NEW_TOKENS` single-token steps, every row of the batch generating) at r = r_max and under an exit rule with
at most r_max iterations, medians of `--repeats` alternating runs; on the shipped organism-recurrent (its
card's rule, latent-diff < 0.005, r_max 32, prompts from synthetic-flips:1-8) and on a wider random model
(n_embd 512). The goal printed beside each batch-8 ratio: speed-up >= 0.8 x (r_max / mean iterations used),
i.e. at least 80% of the saving the iteration count promises turns into wall time. Also printed: how many
iterations the batch loop ran per step (the most any row needed), r_max / that is the bound when an
iteration costs the same whatever the number of active rows (small models, small batches).

Run: .venv/bin/python benchmarks/bench_recurrent.py [--quick] [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch

from reasonlens.recurrent import RecurrentDepthConfig, RecurrentDepthLM

NEW_TOKENS = 8
GOAL_FRACTION = 0.8


def build(seed: int = 0) -> RecurrentDepthLM:
    torch.manual_seed(seed)
    config = RecurrentDepthConfig(
        n_embd=128,
        n_heads=4,
        vocab_size=300,
        intermediate_size=256,
        block_size=1024,
        n_layers_in_prelude=2,
        n_layers_in_recurrent_block=4,
        n_layers_in_coda=2,
    )
    return RecurrentDepthLM(config).eval()


def build_wide(seed: int = 0) -> RecurrentDepthLM:
    """A wider random model: n_embd 512, 8 heads, prelude 1 / core 2 / coda 1 blocks."""
    torch.manual_seed(seed)
    config = RecurrentDepthConfig(
        n_embd=512,
        n_heads=8,
        vocab_size=512,
        intermediate_size=1024,
        block_size=1024,
        n_layers_in_prelude=1,
        n_layers_in_recurrent_block=2,
        n_layers_in_coda=1,
    )
    return RecurrentDepthLM(config).eval()


# ----------------------------------------------------------------------------------------------- adaptive vs fixed


def left_pad(prompts: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


@dataclass
class Timing:
    seconds_per_token: float  # wall time of the decode steps / generated tokens (all rows)
    mean_iterations: float  # core iterations per generated token (mean over rows and steps)
    loop_iterations: float  # iterations the batch loop ran per step (the most any row used), mean over steps


@torch.no_grad()
def timed_decode(model, prompts: list[list[int]], new_tokens: int, **kwargs) -> Timing:
    """Prefill (untimed), then `new_tokens` cached greedy single-token steps for every row (timed)."""
    ids, mask = left_pad(prompts)
    cache = model.make_cache(len(prompts))
    out = model(ids, attention_mask=mask, past_key_values=cache, use_cache=True, **kwargs)
    used = []
    started = time.perf_counter()
    for _ in range(new_tokens):
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        mask = torch.cat([mask, torch.ones_like(nxt)], 1)
        out = model(nxt, attention_mask=mask, past_key_values=cache, use_cache=True, **kwargs)
        used.append(out.iterations_used)
    seconds = time.perf_counter() - started
    used = torch.stack(used)  # [steps, B]
    tokens = new_tokens * len(prompts)
    return Timing(seconds / tokens, float(used.float().mean()), float(used.max(dim=1).values.float().mean()))


def compare(label: str, model, prompts: list[list[int]], r_max: int, rule: dict, repeats: int) -> dict:
    fixed_kwargs = {"num_steps": r_max, "init_scale": 0.0}
    adaptive_kwargs = {**fixed_kwargs, **rule}
    timed_decode(model, prompts[:2], 2, **adaptive_kwargs)  # warm-up
    fixed, adaptive = [], []
    for repeat in range(repeats):  # alternate the order so that load drifts hit both alike
        pair = [("fixed", fixed_kwargs, fixed), ("adaptive", adaptive_kwargs, adaptive)]
        for _, kwargs, sink in pair if repeat % 2 == 0 else pair[::-1]:
            sink.append(timed_decode(model, prompts, NEW_TOKENS, **kwargs))
    fixed_s = statistics.median(t.seconds_per_token for t in fixed)
    adaptive_s = statistics.median(t.seconds_per_token for t in adaptive)
    mean_iterations = statistics.median(t.mean_iterations for t in adaptive)
    loop_iterations = statistics.median(t.loop_iterations for t in adaptive)
    speed_up = fixed_s / adaptive_s
    ideal = r_max / mean_iterations
    row = {
        "model": label,
        "batch": len(prompts),
        "fixed_ms": 1e3 * fixed_s,
        "adaptive_ms": 1e3 * adaptive_s,
        "mean_iterations": mean_iterations,
        "loop_iterations": loop_iterations,
        "speed_up": speed_up,
        "ideal": ideal,
        "fraction": speed_up / ideal,
    }
    print(
        f"{label:22s} batch {len(prompts):3d}: fixed r={r_max} {row['fixed_ms']:8.2f} ms/token, adaptive "
        f"{row['adaptive_ms']:8.2f} ms/token, mean iterations {mean_iterations:5.2f} (batch loop ran "
        f"{loop_iterations:5.2f}/step) -> speed-up x{speed_up:.2f} (r_max/mean x{ideal:.2f}, "
        f"{100 * row['fraction']:.0f}% of it; r_max/loop x{r_max / loop_iterations:.2f})",
        flush=True,
    )
    if len(prompts) == 8:
        verdict = "met" if speed_up >= GOAL_FRACTION * ideal else "NOT met"
        print(
            f"{'':22s} goal at batch 8: speed-up >= {GOAL_FRACTION} x {ideal:.2f} = {GOAL_FRACTION * ideal:.2f}: "
            f"{verdict}",
            flush=True,
        )
    return row


def organism_prompts(lm, n: int) -> list[list[int]]:
    from reasonlens.data import load_problems

    problems = load_problems("synthetic-flips:1-8", split="test", n=n)
    return [lm.tokenizer(p.question)["input_ids"] for p in problems]


def random_prompts(n: int, vocab: int, seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 17, (n,), generator=generator).tolist()
    return [torch.randint(1, vocab, (length,), generator=generator).tolist() for length in lengths]


def adaptive_vs_fixed(batches: tuple[int, ...], repeats: int) -> list[dict]:
    from reasonlens.models import load

    rows = []
    organism = load("organism-recurrent")
    rule = {"exit_criterion": "latent-diff", "exit_threshold": 0.005}  # the organism card's rule
    prompts = organism_prompts(organism, max(batches))
    for batch in batches:
        rows.append(compare("organism-recurrent", organism.model, prompts[:batch], 32, rule, repeats))
    wide = build_wide()
    # Random weights converge unlike a trained model; this threshold makes rows exit at various depths.
    wide_rule = {"exit_criterion": "latent-diff", "exit_threshold": 0.05}
    prompts = random_prompts(max(batches), wide.config.vocab_size)
    for batch in batches:
        rows.append(compare("random n_embd 512", wide, prompts[:batch], 32, wide_rule, repeats))
    return rows


# ----------------------------------------------------------------------------------------------- cache checks


@torch.no_grad()
def greedy_cached(model, prompt, new_tokens, cache=None, **kwargs) -> tuple[float, int]:
    cache = model.make_cache(prompt.shape[0]) if cache is None else cache
    started = time.perf_counter()
    out = model(prompt, past_key_values=cache, use_cache=True, **kwargs)
    iterations = int(out.iterations_used.sum())
    for _ in range(new_tokens):
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        out = model(nxt, past_key_values=cache, use_cache=True, **kwargs)
        iterations += int(out.iterations_used.sum())
    return time.perf_counter() - started, iterations


@torch.no_grad()
def greedy_recompute(model, prompt, new_tokens, **kwargs) -> float:
    started = time.perf_counter()
    ids = prompt
    for _ in range(new_tokens + 1):
        nxt = model(ids, **kwargs).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], 1)
    return time.perf_counter() - started


def cache_checks() -> None:
    model = build()
    prompt = torch.randint(3, 300, (1, 48))
    new_tokens, r = 32, 8
    greedy_cached(model, prompt, 2, num_steps=r, init_scale=0.0)  # warm-up
    recompute = greedy_recompute(model, prompt, new_tokens, num_steps=r, init_scale=0.0)
    cached, _ = greedy_cached(model, prompt, new_tokens, num_steps=r, init_scale=0.0)
    print(
        f"decode {new_tokens} tokens at r={r}: cached {cached:.2f}s vs recompute {recompute:.2f}s "
        f"-> speed-up x{recompute / cached:.2f}"
    )
    r_max = 16
    full_cache, small_cache = model.make_cache(1), model.make_cache(1, slots=4)
    full_t, _ = greedy_cached(model, prompt, new_tokens, cache=full_cache, num_steps=r_max, init_scale=0.0)
    small_t, _ = greedy_cached(model, prompt, new_tokens, cache=small_cache, num_steps=r_max, init_scale=0.0)
    print(
        f"cache memory with 4 slots/core layer vs full (r={r_max}): "
        f"{small_cache.memory_bytes() / full_cache.memory_bytes():.2f}x, time ratio x{small_t / full_t:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batches 1 and 8 only, 3 repeats")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch threads {args.threads}; medians of {3 if args.quick else args.repeats} alternating repeats; "
        "wall times depend on machine load, the ratios within one run are what count"
    )
    batches = (1, 8) if args.quick else (1, 8, 32)
    adaptive_vs_fixed(batches, 3 if args.quick else args.repeats)
    cache_checks()


if __name__ == "__main__":
    main()
