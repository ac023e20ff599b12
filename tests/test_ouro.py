"""Ouro / LoopLM: parity with the reference modeling file, the learned exit gate, batched ragged decoding, and
the depth / latent tools on the tiny fixture (tests/fixtures/ouro_tiny, written by the reference; see its README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reasonlens.errors import UserError
from reasonlens.recurrent import OuroLM, RecurrentDepthConfig, RecurrentDepthLM, is_recurrent_dir

FIXTURE = Path(__file__).parent / "fixtures" / "ouro_tiny"


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def ouro() -> OuroLM:
    return OuroLM.from_pretrained(FIXTURE)


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "reference_outputs.safetensors"))


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, tolerance: float = 1e-5) -> None:
    delta = float((actual - expected).abs().max())
    assert delta <= tolerance * float(expected.abs().max()), f"max |delta| {delta:.3g}"


# ---------------------------------------------------------------------------- parity with the reference


@pytest.mark.parametrize("loops", [1, 2, 3, 4, 6])
def test_logits_match_reference_for_each_loop_count(ouro, reference, loops):
    with torch.no_grad():
        logits = ouro(reference["input_ids"], num_steps=loops).logits
    assert_close_relative(logits, reference[f"logits_r{loops}"])


def test_default_loop_count_is_total_ut_steps(ouro, reference):
    assert ouro.config.total_ut_steps == 4
    with torch.no_grad():
        assert_close_relative(ouro(reference["input_ids"]).logits, reference["logits_r4"])


def test_per_loop_states_and_exit_distribution_match_reference(ouro, reference):
    with torch.no_grad():
        out = ouro(reference["input_ids"], num_steps=4, output_latents=True)
        states = out.iteration_states
        assert_close_relative(states, reference["loop_states_r4"])
        gate = ouro.exit_gate_probability(states)  # [4, B, S]
    remaining, pdf = torch.ones_like(gate[0]), []
    for loop in range(4):
        pdf.append(gate[loop] * remaining if loop < 3 else remaining)
        remaining = remaining * (1 - gate[loop])
    assert torch.allclose(torch.stack(pdf, dim=2), reference["exit_pdf_r4"], atol=1e-6)


def _reference_exit_loop(pdf: torch.Tensor, threshold: float) -> torch.Tensor:
    """The reference's rule on its own exit distribution [..., R]: first loop with CDF >= threshold, else the last."""
    reached = pdf.cumsum(-1) >= threshold
    loop = reached.float().argmax(-1)
    return torch.where(reached.any(-1), loop, torch.full_like(loop, pdf.shape[-1] - 1))


@pytest.mark.parametrize("tenths", [3, 6, 9])
def test_ouro_gate_exit_matches_reference_threshold_rule(ouro, reference, tenths):
    """The reference picks, per token, the first loop whose cumulative exit probability reaches q; our criterion
    stops there (judged on the last position): the last position's logits and loop count agree."""
    expected_loop = _reference_exit_loop(reference["exit_pdf_r4"][:, -1], tenths / 10)
    with torch.no_grad():
        out = ouro(reference["input_ids"], num_steps=4, exit_criterion="ouro-gate", exit_threshold=tenths / 10)
    assert out.iterations_used.tolist() == (expected_loop + 1).tolist()
    assert_close_relative(out.logits[:, -1], reference[f"logits_r4_exit{tenths}"][:, -1])


def test_ouro_gate_thresholds_give_different_depths(reference):
    loops = {tuple(_reference_exit_loop(reference["exit_pdf_r4"][:, -1], q / 10).tolist()) for q in (3, 6, 9)}
    assert len(loops) == 3  # the parity test above compares three different exit depths


def test_ouro_gate_needs_a_gate():
    torch.manual_seed(0)
    huginn = RecurrentDepthLM(RecurrentDepthConfig(n_embd=32, n_heads=4, vocab_size=61, intermediate_size=48))
    with pytest.raises(UserError, match="ouro-gate"):
        huginn(torch.zeros(1, 3, dtype=torch.long), num_steps=2, exit_criterion="ouro-gate")


# ---------------------------------------------------------------------------- batched ragged decoding


@torch.no_grad()
def _greedy(model, ids: torch.Tensor, mask: torch.Tensor | None, new_tokens: int, **kwargs):
    cache = model.make_cache(ids.shape[0])
    out = model(ids, attention_mask=mask, past_key_values=cache, use_cache=True, **kwargs)
    logits, iterations = [out.logits[:, -1]], [out.iterations_used]
    for _ in range(new_tokens):
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        if mask is not None:
            mask = torch.cat([mask, torch.ones_like(nxt)], 1)
        out = model(nxt, attention_mask=mask, past_key_values=cache, use_cache=True, **kwargs)
        logits.append(out.logits[:, -1])
        iterations.append(out.iterations_used)
    return torch.stack(logits, 1), torch.stack(iterations, 1)


def test_batched_ragged_cached_decoding_matches_fixed_reference_not_upstream_bug(ouro, reference):
    """Upstream's per-loop cache reported a wrong kv length at decode steps, so padded rows attended to padding;
    the fixture holds the corrected reference's logits and, for contrast, the buggy ones."""
    ids, mask = reference["ragged_input_ids"], reference["ragged_attention_mask"]
    logits, _ = _greedy(ouro, ids, mask, 4, num_steps=4)
    assert_close_relative(logits, reference["ragged_cached_logits_r4"])
    bug = reference["ragged_cached_logits_r4_upstream_bug"]
    assert float((logits - bug).abs().max()) > 0.1  # the test case tells the two apart


def test_batched_adaptive_gate_decoding_equals_each_row_alone(ouro, reference):
    ids, mask = reference["ragged_input_ids"], reference["ragged_attention_mask"]
    kwargs = dict(num_steps=6, exit_criterion="ouro-gate", exit_threshold=0.6)
    logits, iterations = _greedy(ouro, ids, mask, 5, **kwargs)
    for row in range(ids.shape[0]):
        alone_ids = ids[row][mask[row].bool()][None]
        alone_logits, alone_iterations = _greedy(ouro, alone_ids, None, 5, **kwargs)
        assert iterations[row].tolist() == alone_iterations[0].tolist()
        assert torch.allclose(logits[row], alone_logits[0], atol=1e-5, rtol=1e-5)
    assert len(set(iterations.flatten().tolist())) > 1


# ---------------------------------------------------------------------------- loading and the tools


def test_loads_natively_through_models_load():
    from reasonlens.models import load, record_layers

    assert is_recurrent_dir(FIXTURE)
    lm = load(str(FIXTURE))
    assert isinstance(lm.model, OuroLM) and lm.tokenizer is not None  # byte-level tokenizer (vocab 300)
    assert lm.eos_token_ids()[0] == 2  # the fixture's config spells the corrected chat ids (bos 1, eos 2, pad 0)
    ids = torch.tensor([[5, 9, 77, 12]])
    store: dict = {}
    with torch.no_grad(), record_layers(lm.layers, [0, "final"], store):
        out = lm.model(ids, num_steps=3, exit_criterion="ouro-gate", exit_threshold=0.5)
    assert torch.equal(store[0], out.final_state[:, -1]) and torch.equal(store["final"], out.final_state[:, -1])


def test_upstream_special_token_quirk_is_fixed(tmp_path):
    """Upstream configs set bos = eos = pad = 0; with a tokenizer that has the chat tokens, eos is <|im_end|>."""
    from reasonlens.models.loaded import byte_level_tokenizer
    from reasonlens.recurrent.ouro import fix_special_token_ids

    model = OuroLM.from_pretrained(FIXTURE)
    model.config.extra.update(bos_token_id=0, eos_token_id=0, pad_token_id=0)
    tokenizer = byte_level_tokenizer(300)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]})
    fix_special_token_ids(model, tokenizer)
    vocab = tokenizer.get_vocab()
    assert model.config.eos_token_id == vocab["<|im_end|>"] == tokenizer.eos_token_id
    assert model.config.bos_token_id == vocab["<|im_start|>"] and model.config.pad_token_id == vocab["<|endoftext|>"]


def test_bad_ouro_configs_are_user_errors(tmp_path):
    config = json.loads((FIXTURE / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"use_sliding_window": True}))
    with pytest.raises(UserError, match="sliding"):
        OuroLM.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="model.safetensors"):
        OuroLM.from_pretrained(tmp_path)


def test_depth_command_on_ouro_with_gate_exit(tmp_path):
    from reasonlens.cli import main

    out = tmp_path / "depth"
    main(
        [
            "depth",
            "--model",
            str(FIXTURE),
            "--dataset",
            "synthetic-hops:2",
            "--n",
            "3",
            "--steps",
            "1,4",
            "--exit",
            "ouro-gate",
            "--threshold",
            "0.6",
            "--max-new-tokens",
            "4",
            "--out",
            str(out),
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"]["4"]["mean_iterations_per_token"] == 4.0
    assert summary["steps"]["1"]["mean_iterations_per_token"] == 1.0
    adaptive = summary["adaptive"]
    assert adaptive["criterion"] == "ouro-gate" and 1.0 <= adaptive["mean_iterations_per_token"] < 4.0


def test_latent_and_mi_in_depth_on_ouro(tmp_path):
    import pyarrow.parquet as pq

    from reasonlens.models import load
    from reasonlens.recurrent.latent import LatentConfig, LatentItem, analyze_latents

    lm = load(str(FIXTURE))
    items = [LatentItem("a", "x = 3. y = x + 1.", gold="4")]
    summary = analyze_latents(lm, items, tmp_path, LatentConfig(max_steps=4, star_steps=8, max_tokens=6), quiet=True)
    rows = pq.read_table(tmp_path / "latents.parquet").to_pylist()
    assert len(rows) == 4 * 6 and all(r["mi"] is not None for r in rows)
    assert summary["n_tokens"] == 6 and (tmp_path / "0000_mi_depth.png").stat().st_size > 1000
    # the per-loop states analysed are the model's own: loop 4 of the analysis equals a 4-loop forward's state
    ids = torch.tensor([lm.tokenizer(items[0].text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        state = lm.model(ids, num_steps=4).final_state[0, -1]
    star = lm.model(ids, num_steps=8).final_state[0, -1]
    last = [r for r in rows if r["iteration"] == 4 and r["position"] == ids.shape[1] - 1][0]
    assert last["dist_to_star"] == pytest.approx(float((state - star).norm()), rel=1e-4)
