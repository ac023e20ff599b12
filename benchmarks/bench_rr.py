"""Representation Recycling throughput on SmolLM2-135M: our batched plug-in vs the reference algorithm.

The reference algorithm (SPEC A6) decodes one problem at a time (batch 1, greedy, KV cache) and, when the
proposed token is a trigger, rolls the cache back one position and re-runs the *whole* forward for that
token with decoder layer l applied twice. Ours is `RepresentationRecycling` in the one decode loop: batched
(rows recycle at different steps) and recomputing only layers >= l. Both run in the same process,
interleaved over repeats; the ratio is tokens/s of ours over the reference's (goal: >= 5x at batch 8).
Also reports how many greedy outputs agree token for token between the two.

    python benchmarks/bench_rr.py [--prompts 8] [--tokens 64] [--repeats 2] [--layer L]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from reasonlens.data import load_problems, render_prompt
from reasonlens.decode import DecodeConfig, decode
from reasonlens.interventions import PAPER_THINKING_WORDS, RepresentationRecycling, default_layer, word_variant_ids
from reasonlens.models import load
from reasonlens.models.hooks import first_tensor


@torch.inference_mode()
def reference_rr(lm, prompt_ids: list[int], triggers: set[int], layer: int, max_new_tokens: int) -> list[int]:
    """Batch-1 greedy decoding with a full forward re-run (layer `layer` doubled) per recycled token."""
    from transformers import DynamicCache

    model, module = lm.model, lm.layers.decoder_layers[layer]
    cache = DynamicCache(config=model.config)
    eos = set(lm.eos_token_ids())
    out = model(input_ids=torch.tensor([prompt_ids]), past_key_values=cache, use_cache=True)
    last = prompt_ids[-1]
    tokens: list[int] = []
    original = module.forward

    def doubled(hidden_states, *args, **kwargs):
        first = original(hidden_states, *args, **kwargs)
        keys = cache.layers[layer].keys[..., -1:, :].clone()
        values = cache.layers[layer].values[..., -1:, :].clone()
        cache.layers[layer].crop(-1)  # the second pass attends to the prefix and its own fresh entry
        second = original(first_tensor(first), *args, **kwargs)
        cache.layers[layer].keys[..., -1:, :] = keys  # keep one entry: the one computed from the real input
        cache.layers[layer].values[..., -1:, :] = values
        return second

    for _ in range(max_new_tokens):
        token = int(out.logits[0, -1].argmax())
        if token in triggers:
            for cache_layer in cache.layers:
                cache_layer.crop(-1)
            module.forward = doubled
            try:
                out = model(input_ids=torch.tensor([[last]]), past_key_values=cache, use_cache=True)
            finally:
                del module.forward
            token = int(out.logits[0, -1].argmax())
        tokens.append(token)
        if token in eos:
            break
        last = token
        out = model(input_ids=torch.tensor([[token]]), past_key_values=cache, use_cache=True)
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--layer", type=int, default=None)
    args = parser.parse_args()

    lm = load("smollm2-135m")
    layer = default_layer(lm.layers.num_layers) if args.layer is None else args.layer
    triggers = {i for w in PAPER_THINKING_WORDS for i in word_variant_ids(lm.tokenizer, w)}
    problems = load_problems("gsm8k", n=args.prompts)
    prompts = [render_prompt(p, "chat", lm.tokenizer) for p in problems]
    prompt_ids = [lm.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    print(
        f"SmolLM2-135M, {args.prompts} GSM8K prompts (chat), {args.tokens} new tokens, layer {layer}, "
        f"{len(triggers)} trigger ids, torch threads {torch.get_num_threads()}"
    )

    times: dict[str, list[float]] = {"reference b1": [], "ours b1": [], "ours b8": []}
    outputs: dict[str, list[list[int]]] = {}
    events = 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        outputs["reference b1"] = [reference_rr(lm, ids, triggers, layer, args.tokens) for ids in prompt_ids]
        times["reference b1"].append(time.perf_counter() - start)
        for name, batch in (("ours b1", 1), ("ours b8", 8)):
            plugin = RepresentationRecycling(triggers, layer=layer)
            start = time.perf_counter()
            gens = decode(lm, prompt_ids, DecodeConfig(max_new_tokens=args.tokens, batch_size=batch), plugins=[plugin])
            times[name].append(time.perf_counter() - start)
            outputs[name] = [g.token_ids for g in gens]
            events = sum(e["type"] == "rerun" for g in gens for e in g.events)

    reference_rate = sum(map(len, outputs["reference b1"])) / statistics.median(times["reference b1"])
    print(f"recycled positions (ours b8): {events}")
    print(f"{'configuration':16s} {'tokens':>7s} {'median s':>9s} {'tok/s':>8s} {'vs reference':>13s} {'agree':>6s}")
    for name, samples in times.items():
        n_tokens = sum(map(len, outputs[name]))
        rate = n_tokens / statistics.median(samples)
        agree = sum(a == b for a, b in zip(outputs[name], outputs["reference b1"]))
        print(
            f"{name:16s} {n_tokens:7d} {statistics.median(samples):9.2f} {rate:8.1f} "
            f"{rate / reference_rate:12.2f}x {agree:3d}/{len(prompt_ids)}"
        )


if __name__ == "__main__":
    main()
