"""Recurrent-depth model: cached decoding vs recomputation, adaptive exit vs fixed depth, cache compression.

Prints ratios against baselines measured in the same run (no absolute thresholds).
Run: .venv/bin/python benchmarks/bench_recurrent.py
"""

from __future__ import annotations

import time

import torch

from reasonlens.recurrent import RecurrentDepthConfig, RecurrentDepthLM


def build(seed: int = 0) -> RecurrentDepthLM:
    torch.manual_seed(seed)
    config = RecurrentDepthConfig(n_embd=128, n_heads=4, vocab_size=300, intermediate_size=256, block_size=1024,
                                  n_layers_in_prelude=2, n_layers_in_recurrent_block=4, n_layers_in_coda=2)
    return RecurrentDepthLM(config).eval()


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


def main() -> None:
    torch.set_num_threads(1)
    model = build()
    prompt = torch.randint(3, 300, (1, 48))
    new_tokens, r = 32, 8
    greedy_cached(model, prompt, 2, num_steps=r, init_scale=0.0)  # warm-up

    recompute = greedy_recompute(model, prompt, new_tokens, num_steps=r, init_scale=0.0)
    cached, _ = greedy_cached(model, prompt, new_tokens, num_steps=r, init_scale=0.0)
    print(f"decode {new_tokens} tokens at r={r}: cached {cached:.2f}s vs recompute {recompute:.2f}s "
          f"-> speed-up x{recompute / cached:.2f}")

    r_max = 16
    fixed, fixed_iters = greedy_cached(model, prompt, new_tokens, num_steps=r_max, init_scale=0.0)
    for criterion, threshold in (("kl", 5e-4), ("latent-diff", 0.03), ("cosine", 1e-3)):
        adaptive, iters = greedy_cached(model, prompt, new_tokens, num_steps=r_max, init_scale=0.0,
                                        exit_criterion=criterion, exit_threshold=threshold)
        print(f"adaptive {criterion}<{threshold:g} (max r={r_max}): iterations {iters}/{fixed_iters} "
              f"({100 * (1 - iters / fixed_iters):.0f}% saved), time ratio vs fixed x{adaptive / fixed:.2f} "
              f"(random weights: convergence is not that of a trained model)")

    full_cache, small_cache = model.make_cache(1), model.make_cache(1, slots=4)
    full_t, _ = greedy_cached(model, prompt, new_tokens, cache=full_cache, num_steps=r_max, init_scale=0.0)
    small_t, _ = greedy_cached(model, prompt, new_tokens, cache=small_cache, num_steps=r_max, init_scale=0.0)
    print(f"cache memory with 4 slots/core layer vs full (r={r_max}): "
          f"{small_cache.memory_bytes() / full_cache.memory_bytes():.2f}x, time ratio x{small_t / full_t:.2f}")


if __name__ == "__main__":
    main()
