"""Model loading, layer adapters, gold representations."""

import json

import pytest
import torch

from reasonlens.errors import UserError
from reasonlens.models import encode_gold, load, record_layers
from reasonlens.models.tiny import tiny_gpt2, tiny_llama, tiny_qwen2


@pytest.mark.parametrize("factory,family,n", [(tiny_llama, "llama", 4), (tiny_qwen2, "qwen2", 3), (tiny_gpt2, "gpt2", 3)])
def test_adapter_finds_the_stack(factory, family, n):
    lm = factory()
    assert lm.layers.family == family and lm.layers.num_layers == n and lm.hidden_size == 64
    assert lm.layers.resolve(-1) == n - 1 and lm.layers.resolve("final") == "final" and lm.layers.resolve("0") == 0
    assert lm.layers.resolve_many("-1,0,-1") == [n - 1, 0]
    with pytest.raises(UserError, match="invalid layer 7"):
        lm.layers.resolve(7)
    with pytest.raises(UserError, match="invalid layer 'x'"):
        lm.layers.resolve("x")


def test_encode_gold_is_last_token_state(tiny_llama):
    gold = encode_gold(tiny_llama, "The answer is 18.", [-1, "final"])
    ids = tiny_llama.tokenizer("The answer is 18.", return_tensors="pt")["input_ids"]
    store = {}
    with torch.no_grad(), record_layers(tiny_llama.layers, [3, "final"], store, last_only=False):
        tiny_llama.model(ids)
    torch.testing.assert_close(gold[3], store[3][0, -1])
    torch.testing.assert_close(gold["final"], store["final"][0, -1])
    mean = encode_gold(tiny_llama, "The answer is 18.", [-1], pooling="mean")
    torch.testing.assert_close(mean[3], store[3][0].mean(0))


def test_local_dir_round_trip_and_errors(tmp_path, tiny_llama):
    tiny_llama.model.save_pretrained(tmp_path / "m")
    tiny_llama.tokenizer.save_pretrained(tmp_path / "m")
    lm = load(str(tmp_path / "m"))
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids).logits, tiny_llama.model(ids).logits)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no config.json"):
        load(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="unknown model"):
        load("no-such-model")
    with pytest.raises(UserError, match="--dtype"):
        load("tiny-llama", dtype="fp8")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"corrupt")
    with pytest.raises(UserError, match="cannot load model"):
        load(str(tmp_path / "m"))


def test_remote_code_needs_the_flag(tmp_path, tiny_llama):
    tiny_llama.model.save_pretrained(tmp_path / "m")
    tiny_llama.tokenizer.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    config["model_type"] = "evil-custom"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    (tmp_path / "m" / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(UserError, match="trust-remote-code|cannot load"):
        load(str(tmp_path / "m"))


def test_smollm2_builtin_loads_from_the_cached_conversion(smollm2):
    assert smollm2.layers.family == "llama" and smollm2.layers.num_layers == 30 and smollm2.hidden_size == 576
    assert smollm2.eos_token_ids() == [2]
    from reasonlens.models.builtin import cache_root

    assert (cache_root() / "smollm2-135m" / "model.safetensors").is_file()
