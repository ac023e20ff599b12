"""Adaptive exit at batch size > 1: only active rows are computed, and every row equals its batch-1 run.

The per-row reference is the same model and criterion run on that row alone (batch 1, no padding). Compared:
generated tokens and iterations used (exactly) and the logits (fp32 tolerance).
"""

from __future__ import annotations

import pytest
import torch

from reasonlens.decode import DecodeConfig, decode
from reasonlens.recurrent import RecurrentDepthConfig, RecurrentDepthLM
from reasonlens.recurrent.depth import IterationAccounting

pytestmark = pytest.mark.usefixtures("single_thread")


def _left_pad(prompts: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


@torch.no_grad()
def greedy(model, prompts: list[list[int]], new_tokens: int, **kwargs):
    """Cached greedy decoding of left-padded prompts: (tokens [B, n], iterations [B, n + 1], logits [B, n + 1, V])."""
    ids, mask = _left_pad(prompts)
    cache = model.make_cache(len(prompts))
    out = model(ids, attention_mask=mask, past_key_values=cache, use_cache=True, **kwargs)
    tokens, iterations, logits = [], [out.iterations_used], [out.logits[:, -1]]
    for _ in range(new_tokens):
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        tokens.append(nxt[:, 0])
        mask = torch.cat([mask, torch.ones_like(nxt)], 1)
        out = model(nxt, attention_mask=mask, past_key_values=cache, use_cache=True, **kwargs)
        iterations.append(out.iterations_used)
        logits.append(out.logits[:, -1])
    return torch.stack(tokens, 1), torch.stack(iterations, 1), torch.stack(logits, 1)


def assert_rows_equal_batch_one(model, prompts: list[list[int]], new_tokens: int, **kwargs) -> torch.Tensor:
    tokens, iterations, logits = greedy(model, prompts, new_tokens, **kwargs)
    for row, prompt in enumerate(prompts):
        alone_tokens, alone_iterations, alone_logits = greedy(model, [prompt], new_tokens, **kwargs)
        assert tokens[row].tolist() == alone_tokens[0].tolist(), f"row {row}: tokens differ"
        assert iterations[row].tolist() == alone_iterations[0].tolist(), f"row {row}: iterations differ"
        assert torch.allclose(logits[row], alone_logits[0], atol=1e-5, rtol=1e-5), f"row {row}: logits differ"
    return iterations


TINY_CONFIGS = {  # name: (seed, config fields)
    "linear-2core": (12, dict(n_layers_in_prelude=1, n_layers_in_recurrent_block=2, n_layers_in_coda=1)),
    "1core-no-prelude": (1, dict(n_embd=64, n_layers_in_prelude=0, n_layers_in_recurrent_block=1, n_layers_in_coda=2)),
    "linear-3core-wide": (
        17,
        dict(n_embd=48, n_heads=6, n_layers_in_prelude=2, n_layers_in_recurrent_block=3, n_layers_in_coda=1),
    ),
}


def tiny(name: str) -> RecurrentDepthLM:
    seed, overrides = TINY_CONFIGS[name]
    fields = dict(n_embd=32, n_heads=4, vocab_size=61, intermediate_size=48, block_size=128, mean_recurrence=4)
    fields.update(overrides)
    torch.manual_seed(seed)
    return RecurrentDepthLM(RecurrentDepthConfig(**fields)).eval()


# Thresholds picked so that rows of these random models exit at different iterations (asserted below).
RULES = [("latent-diff", 0.2), ("kl", 1e-3), ("argmax-stability", 2), ("cosine", 5e-3)]


@pytest.mark.parametrize("config_name", list(TINY_CONFIGS))
@pytest.mark.parametrize("criterion,threshold", RULES)
def test_batched_adaptive_equals_each_row_alone_on_random_configs(config_name, criterion, threshold):
    model = tiny(config_name)
    generator = torch.Generator().manual_seed(7)
    lengths = [3, 9, 5, 1, 7]  # ragged: left padding up to 8 positions
    prompts = [torch.randint(1, 61, (n,), generator=generator).tolist() for n in lengths]
    iterations = assert_rows_equal_batch_one(
        model, prompts, 6, num_steps=12, init_scale=0.0, exit_criterion=criterion, exit_threshold=threshold
    )
    # the test means something only when rows really leave the batch at different iterations
    assert any(len(set(column.tolist())) > 1 for column in iterations.T), iterations
    assert int(iterations.min()) < 12


def test_warm_start_and_min_steps_batched_equal_alone():
    model = tiny("linear-2core")
    prompts = [[5, 9, 11], [7], [2, 3, 4, 5, 6, 8]]
    assert_rows_equal_batch_one(
        model,
        prompts,
        5,
        num_steps=10,
        init_scale=0.0,
        exit_criterion="latent-diff",
        exit_threshold=0.25,
        exit_min_steps=3,
        warm_start=True,
    )


def test_exited_rows_cost_nothing():
    """The core block processes exactly sum(iterations used) rows per call: nothing for rows that exited."""
    model = tiny("linear-2core")
    rows_seen: list[int] = []
    handle = model.transformer.core_block[0].register_forward_hook(lambda m, args, out: rows_seen.append(out.shape[0]))
    try:
        prompts = [[4, 8, 15], [16, 23], [42, 1, 2, 3], [9]]
        ids, mask = _left_pad(prompts)
        with torch.no_grad():
            cache = model.make_cache(4)
            out = model(
                ids,
                attention_mask=mask,
                past_key_values=cache,
                use_cache=True,
                num_steps=16,
                init_scale=0.0,
                exit_criterion="latent-diff",
                exit_threshold=0.2,
            )
            assert rows_seen and sum(rows_seen) == int(out.iterations_used.sum())
            rows_seen.clear()
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(nxt)], 1)
            out = model(
                nxt,
                attention_mask=mask,
                past_key_values=cache,
                use_cache=True,
                num_steps=16,
                init_scale=0.0,
                exit_criterion="latent-diff",
                exit_threshold=0.2,
            )
        assert sum(rows_seen) == int(out.iterations_used.sum())
        assert len(set(out.iterations_used.tolist())) > 1 and sum(rows_seen) < 4 * len(rows_seen)
    finally:
        handle.remove()


def test_fixed_depth_is_untouched_by_the_sub_batch_path():
    """Threshold 0 never exits early: the adaptive path equals fixed r_max, batched and with padding."""
    model = tiny("linear-3core-wide")
    prompts = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3, 5, 8, 9, 7]]
    fixed_tokens, fixed_iterations, fixed_logits = greedy(model, prompts, 4, num_steps=6, init_scale=0.0)
    tokens, iterations, logits = greedy(
        model, prompts, 4, num_steps=6, init_scale=0.0, exit_criterion="latent-diff", exit_threshold=0.0
    )
    assert torch.equal(tokens, fixed_tokens) and bool((iterations == 6).all()) and bool((fixed_iterations == 6).all())
    assert torch.allclose(logits, fixed_logits, atol=1e-6)


# ---------------------------------------------------------------------------- the shipped organism


@pytest.fixture(scope="module")
def organism():
    from reasonlens.models import load

    return load("organism-recurrent")


@pytest.fixture(scope="module")
def flips_prompts() -> list[str]:
    """Eight test questions of different lengths (levels 1-8): ragged batches."""
    from reasonlens.data import load_problems

    problems = load_problems("synthetic-flips:1-8", split="test", n=64)
    by_level: dict = {}
    for problem in problems:
        by_level.setdefault(problem.meta["level"], problem.question)
    return [by_level[level] for level in sorted(by_level)][:8]


ORGANISM_RULE = {"num_steps": 32, "init_scale": 0.0, "exit_criterion": "latent-diff", "exit_threshold": 0.005}


@pytest.mark.parametrize("batch_size", [1, 4, 8])
def test_organism_decode_loop_batched_equals_batch_one(organism, flips_prompts, batch_size):
    """Through the one decode loop: tokens and iterations per token of every row equal the batch-1 run."""
    lengths = {len(organism.tokenizer(p)["input_ids"]) for p in flips_prompts}
    assert len(lengths) >= 6  # ragged

    def run(size: int):
        accounting = IterationAccounting()
        generations = decode(
            organism,
            flips_prompts,
            DecodeConfig(max_new_tokens=12, batch_size=size, forward_kwargs=ORGANISM_RULE),
            plugins=[accounting],
        )
        return [g.token_ids for g in generations], [accounting.per_key[key] for key in range(len(flips_prompts))]

    alone_tokens, alone_iterations = run(1)
    tokens, iterations = run(batch_size)
    assert tokens == alone_tokens
    assert iterations == alone_iterations
    flat = [i for per_row in alone_iterations for i in per_row]
    assert min(flat) < 32 and len(set(flat)) > 3  # the rule really exits, at different depths


def test_organism_batched_logits_equal_batch_one(organism, flips_prompts):
    prompts = [organism.tokenizer(p)["input_ids"] for p in flips_prompts]
    iterations = assert_rows_equal_batch_one(organism.model, prompts, 6, **ORGANISM_RULE)
    assert any(len(set(column.tolist())) > 1 for column in iterations.T)


def test_full_cache_copies_equal_the_gather_lookup_of_a_compressed_cache():
    """Rows that exited early are read at their deepest entry: the full cache keeps copies in deeper slots, a
    compressed cache with more slots than iterations gathers per position; both give the same decode."""
    model = tiny("linear-2core")
    prompts = [[4, 8, 15], [16, 23, 42, 7, 1], [9]]
    kwargs = dict(num_steps=12, init_scale=0.0, exit_criterion="latent-diff", exit_threshold=0.2)
    tokens, iterations, logits = greedy(model, prompts, 6, **kwargs)
    gathered_tokens, gathered_iterations, gathered_logits = greedy(model, prompts, 6, cache_slots=64, **kwargs)
    assert torch.equal(tokens, gathered_tokens) and torch.equal(iterations, gathered_iterations)
    assert torch.allclose(logits, gathered_logits, atol=1e-6, rtol=0)
    assert int(iterations.min()) < int(iterations.max())  # depths differ, so deeper reads of shallow rows happen
