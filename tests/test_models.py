"""Model loading, layer adapters, gold representations."""

import json

import pytest
import torch

from reasonlens.errors import UserError
from reasonlens.models import encode_gold, load, record_layers
from reasonlens.models.tiny import tiny_gpt2, tiny_llama, tiny_qwen2


@pytest.mark.parametrize(
    "factory,family,n", [(tiny_llama, "llama", 4), (tiny_qwen2, "qwen2", 3), (tiny_gpt2, "gpt2", 3)]
)
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


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("all", [0, 1, 2, 3]),
        ("1-2", [1, 2]),
        ("-2:-1", [2, 3]),
        ("embed,0,final", ["embed", 0, "final"]),
        ("0-3,final,2", [0, 1, 2, 3, "final"]),
        ("-1", [3]),
    ],
)
def test_layer_specs_all_ranges_embed(tiny_llama, spec, expected):
    assert tiny_llama.layers.resolve_many(spec) == expected


@pytest.mark.parametrize(
    "spec,needle", [("3-1", "invalid layer range '3-1'"), ("x", "invalid layer 'x'"), ("4", "invalid layer 4")]
)
def test_bad_layer_specs(tiny_llama, spec, needle):
    with pytest.raises(UserError, match=needle):
        tiny_llama.layers.resolve_many(spec)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_layer_k_is_block_k_output_and_hf_hidden_states_k_plus_1(name):
    """The documented meaning of layer keys: embed = hidden_states[0], k = hidden_states[k+1] (k < L-1; HF's
    last entry is already normed), final = hidden_states[L]."""
    from reasonlens.models import load, record_layers

    lm = load(name)
    n = lm.layers.num_layers
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    store = {}
    keys = lm.layers.resolve_many("embed,all,final")
    with torch.no_grad(), record_layers(lm.layers, keys, store, last_only=False):
        out = lm.model(input_ids=ids, output_hidden_states=True)
    hidden = out.hidden_states
    assert len(hidden) == n + 1
    torch.testing.assert_close(store["embed"], hidden[0])
    for k in range(n - 1):
        torch.testing.assert_close(store[k], hidden[k + 1])
    torch.testing.assert_close(store["final"], hidden[n])
