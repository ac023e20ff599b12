"""RecurrentDepthLM: parity with the huginn reference, shapes, determinism, cache, exits, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reasonlens.errors import UserError
from reasonlens.recurrent import (
    DEFAULT_THRESHOLDS,
    RecurrentDepthConfig,
    RecurrentDepthLM,
    is_recurrent_dir,
    load_recurrent,
)

FIXTURE = Path(__file__).parent / "fixtures" / "huginn_tiny"


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_config(**overrides) -> RecurrentDepthConfig:
    fields = dict(
        n_embd=32,
        n_heads=4,
        vocab_size=61,
        intermediate_size=48,
        block_size=64,
        mean_recurrence=4,
        mean_backprop_depth=2,
        n_layers_in_prelude=1,
        n_layers_in_recurrent_block=2,
        n_layers_in_coda=1,
    )
    fields.update(overrides)
    return RecurrentDepthConfig(**fields)


@pytest.fixture(scope="module")
def model() -> RecurrentDepthLM:
    torch.manual_seed(0)
    return RecurrentDepthLM(tiny_config()).eval()


@pytest.fixture(scope="module")
def reference():
    return load_file(str(FIXTURE / "reference_outputs.safetensors"))


@pytest.fixture(scope="module")
def huginn():
    return RecurrentDepthLM.from_pretrained(FIXTURE)


# ---------------------------------------------------------------------------- parity with the reference


@pytest.mark.parametrize("steps", [1, 4, 8])
def test_logits_match_reference_zero_state(huginn, reference, steps):
    with torch.no_grad():
        logits = huginn(reference["input_ids"], num_steps=steps, init_scale=0.0).logits
    assert torch.allclose(logits, reference[f"logits_r{steps}"], atol=1e-5, rtol=0)


def test_logits_match_reference_random_state(huginn, reference):
    torch.manual_seed(1234)
    with torch.no_grad():
        logits = huginn(reference["input_ids"], num_steps=4, init_scale=1.0).logits
    assert torch.allclose(logits, reference["logits_r4_seed1234_init1"], atol=1e-5, rtol=0)


def test_cached_decode_matches_reference_cache(huginn, reference):
    row = reference["input_ids"][:1]
    cache = huginn.make_cache(1)
    with torch.no_grad():
        steps = [huginn(row[:, :8], num_steps=4, init_scale=0.0, past_key_values=cache, use_cache=True).logits[:, -1]]
        for t in range(8, 12):
            steps.append(
                huginn(row[:, t : t + 1], num_steps=4, init_scale=0.0, past_key_values=cache, use_cache=True).logits[
                    :, -1
                ]
            )
    assert torch.allclose(torch.stack(steps, 1), reference["cached_logits_r4_row0"], atol=1e-5, rtol=0)


def test_huginn_dir_detection_and_loading(tmp_path):
    assert is_recurrent_dir(FIXTURE)
    assert not is_recurrent_dir(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    assert not is_recurrent_dir(tmp_path)
    lm = load_recurrent(FIXTURE, dtype="fp32")
    assert isinstance(lm.model, RecurrentDepthLM) and lm.layers.num_layers == 2 + 1 + 2
    assert lm.model.config.n_embd == 64 and lm.model.config.rope_base == 50000.0
    assert lm.model.lm_head.weight is lm.model.transformer.wte.weight  # tied


def test_reference_parameter_names(huginn):
    names = set(huginn.state_dict())
    for expected in (
        "transformer.wte.weight",
        "transformer.adapter.weight",
        "transformer.ln_f.weight",
        "transformer.prelude.0.norm_1.weight",
        "transformer.core_block.3.attn.Wqkv.weight",
        "transformer.core_block.0.attn.qk_bias",
        "transformer.coda.1.mlp.fc.weight",
        "transformer.coda.1.mlp.proj.weight",
        "transformer.prelude.1.norm_4.weight",
        "lm_head.weight",
    ):
        assert expected in names


# ---------------------------------------------------------------------------- basic behaviour


def test_shapes_and_outputs(model):
    ids = torch.randint(0, 61, (3, 5))
    with torch.no_grad():
        out = model(ids, num_steps=3, init_scale=0.0, output_latents=True, output_hidden_states=True)
    assert out.logits.shape == (3, 5, 61) and out.logits.dtype == torch.float32
    assert out.iteration_states.shape == (3, 3, 5, 32)
    assert torch.equal(out.iteration_states[-1], out.final_state)
    assert out.iterations_used.tolist() == [3, 3, 3]
    assert len(out.hidden_states) == 1 + 1 + 1 + 1 + 1  # embeds, prelude, ln_f(s_r), coda, final norm
    assert torch.allclose(out.hidden_states[2], out.latent_states)


def test_zero_state_is_deterministic_random_state_is_not(model):
    ids = torch.randint(0, 61, (2, 6))
    with torch.no_grad():
        a = model(ids, num_steps=4, init_scale=0.0).logits
        b = model(ids, num_steps=4, init_scale=0.0).logits
        c = model(ids, num_steps=4, init_scale=1.0).logits
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_depth_changes_output(model):
    ids = torch.randint(0, 61, (1, 6))
    with torch.no_grad():
        one, four = (model(ids, num_steps=r, init_scale=0.0).logits for r in (1, 4))
    assert not torch.allclose(one, four)


def test_save_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    loaded = RecurrentDepthLM.from_pretrained(tmp_path / "m")
    ids = torch.randint(0, 61, (2, 7))
    with torch.no_grad():
        assert torch.equal(
            model(ids, num_steps=3, init_scale=0.0).logits, loaded(ids, num_steps=3, init_scale=0.0).logits
        )
    assert is_recurrent_dir(tmp_path / "m")
    assert loaded.config == model.config


def test_bad_inputs_raise_user_errors(model, tmp_path):
    with pytest.raises(UserError):
        model(torch.zeros(2, 3, dtype=torch.long), num_steps=0)
    with pytest.raises(UserError):
        model(torch.zeros(2, 3, dtype=torch.long), num_steps=2, exit_criterion="bogus")
    with pytest.raises(UserError):
        RecurrentDepthLM.from_pretrained(tmp_path)
    with pytest.raises(UserError):
        RecurrentDepthConfig(n_embd=30, n_heads=4, vocab_size=10, intermediate_size=8)


# ---------------------------------------------------------------------------- cache and generation


def _greedy_incremental(model, prompt: torch.Tensor, new_tokens: int, **kwargs) -> tuple[list[int], list[torch.Tensor]]:
    """Test-only greedy helper (cached, one token per call) to compare with full forwards."""
    cache = kwargs.pop("cache", None)
    cache = model.make_cache(prompt.shape[0]) if cache is None else cache
    ids = prompt
    out = model(ids, past_key_values=cache, use_cache=True, **kwargs)
    tokens, logits = [], [out.logits[:, -1]]
    for _ in range(new_tokens):
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        tokens.append(int(nxt[0]))
        ids = torch.cat([ids, nxt], 1)
        out = model(nxt, past_key_values=cache, use_cache=True, **kwargs)
        logits.append(out.logits[:, -1])
    return tokens, logits


@pytest.mark.parametrize("steps", [1, 3])
def test_incremental_decoding_equals_full_forward(model, steps):
    prompt = torch.randint(0, 61, (1, 5))
    with torch.no_grad():
        tokens, logits = _greedy_incremental(model, prompt, 6, num_steps=steps, init_scale=0.0)
        full = model(torch.cat([prompt, torch.tensor([tokens])], 1), num_steps=steps, init_scale=0.0).logits
    assert torch.allclose(torch.stack(logits, 1)[0], full[0, 4:], atol=1e-5)


def test_left_padding_matches_unpadded_rows(model):
    long, short = torch.randint(3, 61, (1, 7)), torch.randint(3, 61, (1, 4))
    ids = torch.cat([long, torch.cat([torch.zeros(1, 3, dtype=torch.long), short], 1)])
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        cache = model.make_cache(2)
        out = model(ids, attention_mask=mask, num_steps=3, init_scale=0.0, past_key_values=cache, use_cache=True)
        alone_long = model(long, num_steps=3, init_scale=0.0).logits[0, -1]
        alone_short = model(short, num_steps=3, init_scale=0.0).logits[0, -1]
        assert torch.allclose(out.logits[0, -1], alone_long, atol=1e-5)
        assert torch.allclose(out.logits[1, -1], alone_short, atol=1e-5)
        nxt = torch.tensor([[5], [9]])
        mask2 = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1)
        step = model(nxt, attention_mask=mask2, num_steps=3, init_scale=0.0, past_key_values=cache, use_cache=True)
        ref = model(torch.cat([short, nxt[1:]], 1), num_steps=3, init_scale=0.0).logits[0, -1]
    assert torch.allclose(step.logits[1, -1], ref, atol=1e-5)


@pytest.mark.parametrize("criterion", ["kl", "kl-reference", "entropy-diff", "latent-diff", "cosine"])
def test_adaptive_exit_threshold_zero_equals_fixed_depth(model, criterion):
    prompt = torch.randint(0, 61, (1, 4))
    with torch.no_grad():
        fixed_tokens, fixed_logits = _greedy_incremental(model, prompt, 5, num_steps=6, init_scale=0.0)
        cache = model.make_cache(1)
        adaptive_tokens, adaptive_logits = _greedy_incremental(
            model, prompt, 5, num_steps=6, init_scale=0.0, exit_criterion=criterion, exit_threshold=0.0, cache=cache
        )
    assert adaptive_tokens == fixed_tokens
    assert torch.allclose(torch.stack(adaptive_logits), torch.stack(fixed_logits), atol=1e-5)
    assert cache.depth[0, : len(cache)].tolist() == [6] * len(cache)


def test_adaptive_exit_saves_iterations_and_reads_deepest_entry(model):
    prompt = torch.randint(0, 61, (1, 4))
    with torch.no_grad():
        cache = model.make_cache(1)
        out = model(
            prompt,
            num_steps=8,
            init_scale=0.0,
            exit_criterion="latent-diff",
            exit_threshold=0.5,
            past_key_values=cache,
            use_cache=True,
        )
        used = int(out.iterations_used[0])
        assert 1 <= used < 8
        assert out.exit_values.shape[1] == 1 and out.exit_values.shape[0] == used
        # the result equals a fixed-depth run of exactly `used` iterations
        fixed = model(prompt, num_steps=used, init_scale=0.0).logits
        assert torch.allclose(out.logits, fixed, atol=1e-5)
        # a later token at depth 8 reads the early-exited prompt at its deepest entry, i.e. as if the
        # prompt's iterations >= used repeated its last computed K/V
        nxt = torch.tensor([[7]])
        later = model(nxt, num_steps=8, init_scale=0.0, past_key_values=cache, use_cache=True)
    assert later.iterations_used.tolist() == [8]
    assert cache.depth[0, :5].tolist() == [used] * 4 + [8]
    assert torch.isfinite(later.logits).all()


def test_batched_adaptive_rows_exit_independently(model):
    torch.manual_seed(3)
    prompts = torch.randint(0, 61, (3, 5))
    with torch.no_grad():
        batched = model(prompts, num_steps=10, init_scale=0.0, exit_criterion="latent-diff", exit_threshold=0.2)
        for row in range(3):
            alone = model(
                prompts[row : row + 1], num_steps=10, init_scale=0.0, exit_criterion="latent-diff", exit_threshold=0.2
            )
            assert int(alone.iterations_used[0]) == int(batched.iterations_used[row])
            assert torch.allclose(alone.logits[0], batched.logits[row], atol=1e-5)


@pytest.mark.parametrize("slots", [6, 9])
def test_compressed_cache_with_enough_slots_equals_full_cache(model, slots):
    prompt = torch.randint(0, 61, (1, 4))
    with torch.no_grad():
        _, full = _greedy_incremental(model, prompt, 4, num_steps=6, init_scale=0.0)
        cache = model.make_cache(1, slots=slots)
        _, compressed = _greedy_incremental(model, prompt, 4, num_steps=6, init_scale=0.0, cache=cache)
    assert torch.equal(torch.stack(full), torch.stack(compressed))
    assert cache.n_slots_allocated == 6


def test_compressed_cache_with_few_slots_differs_and_uses_less_memory(model):
    prompt = torch.randint(0, 61, (1, 4))
    with torch.no_grad():
        full_cache, small_cache = model.make_cache(1), model.make_cache(1, slots=2)
        _, full = _greedy_incremental(model, prompt, 4, num_steps=6, init_scale=0.0, cache=full_cache)
        _, small = _greedy_incremental(model, prompt, 4, num_steps=6, init_scale=0.0, cache=small_cache)
    assert small_cache.n_slots_allocated == 2
    assert small_cache.memory_bytes() < full_cache.memory_bytes()
    assert torch.equal(full[0], small[0])  # the prefill never reads old slots
    assert not torch.allclose(torch.stack(full[1:]), torch.stack(small[1:]))


def test_warm_start_uses_previous_final_state(model):
    prompt = torch.randint(0, 61, (1, 4))
    with torch.no_grad():
        cache = model.make_cache(1)
        first = model(prompt, num_steps=3, init_scale=0.0, past_key_values=cache, use_cache=True)
        nxt = torch.tensor([[11]])
        warm_cache_copy = cache.last_state.clone()
        assert torch.equal(warm_cache_copy, first.final_state[:, -1])
        warm = model(nxt, num_steps=3, init_scale=0.0, past_key_values=cache, use_cache=True, warm_start=True)
        cache2 = model.make_cache(1)
        model(prompt, num_steps=3, init_scale=0.0, past_key_values=cache2, use_cache=True)
        explicit = model(
            nxt, num_steps=3, input_states=warm_cache_copy[:, None], past_key_values=cache2, use_cache=True
        )
    assert torch.allclose(warm.logits, explicit.logits, atol=1e-6)


def test_default_thresholds_documented():
    assert DEFAULT_THRESHOLDS["kl"] == 5e-4
    assert set(DEFAULT_THRESHOLDS) >= {"kl", "entropy-diff", "latent-diff", "argmax-stability", "cosine"}


def test_models_load_and_layer_capture(huginn, reference):
    from reasonlens.models import load, record_layers

    lm = load(str(FIXTURE))
    assert isinstance(lm.model, RecurrentDepthLM)
    ids = reference["input_ids"]
    store: dict = {}
    for criterion in (None, "latent-diff"):
        with torch.no_grad(), record_layers(lm.layers, [1, 2, 4, "final"], store):
            out = lm.model(
                ids,
                num_steps=6,
                init_scale=0.0,
                output_hidden_states=True,
                exit_criterion=criterion,
                exit_threshold=0.2,
            )
        assert torch.equal(store[2], out.final_state[:, -1])  # layer P = final core state
        assert torch.allclose(store[1], out.hidden_states[2][:, -1])  # last prelude block
        assert torch.allclose(store[4], out.hidden_states[5][:, -1])  # last coda block
        assert torch.allclose(store["final"], out.hidden_states[6][:, -1])


def test_config_accepts_huginn_spellings_and_round_trips():
    data = {
        "n_embd": 32,
        "num_attention_heads": 4,
        "vocab_size": 10,
        "intermediate_size": 8,
        "eos_token_id": 5,
        "auto_map": {"AutoConfig": "x"},
        "hf_config": {"org": "y"},
    }
    config = RecurrentDepthConfig.from_dict(data)
    assert config.n_heads == 4 and config.eos_token_id == 5 and config.rope_base == 50000.0
    assert config.n_layers == 2 + 4 + 2
    again = RecurrentDepthConfig.from_dict(config.to_dict())
    assert again == config and again.to_dict()["auto_map"] == {"AutoConfig": "x"}
    with pytest.raises(UserError, match="intermediate_size"):
        RecurrentDepthConfig.from_dict({"n_embd": 32, "n_heads": 4, "vocab_size": 10})


def test_add_injection_and_zero_state_init(tmp_path):
    torch.manual_seed(1)
    model = RecurrentDepthLM(tiny_config(injection_type="add", state_init="zero")).eval()
    assert "transformer.adapter.weight" not in model.state_dict()
    ids = torch.randint(0, 61, (1, 5))
    with torch.no_grad():
        noisy = model(ids, num_steps=3, init_scale=1.0).logits  # state_init "zero" ignores init_scale
        zero = model(ids, num_steps=3, init_scale=0.0).logits
        out = model(ids, num_steps=1, input_states=torch.zeros(1, 5, 32), output_latents=True)
    assert torch.equal(noisy, zero)
    model.save_pretrained(tmp_path / "add")
    assert RecurrentDepthLM.from_pretrained(tmp_path / "add").config.injection_type == "add"
    assert out.iteration_states.shape == (1, 1, 5, 32)
