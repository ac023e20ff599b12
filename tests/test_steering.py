"""Hidden-state hooks as decode plug-ins: steering and activation patching equal HF generate with the same
forward hook on the decoder layer, token for token, on tiny random Llama and Qwen2 models."""

import pytest
import torch
from hf_reference import hf_greedy

from reasonlens.decode import DecodeConfig, HiddenStateHook, decode
from reasonlens.errors import UserError
from reasonlens.interventions.steering import ActivationPatch, Steering
from reasonlens.models import record_layers
from reasonlens.models.hooks import first_tensor, hook_name, replace_first, resolve_hook_point
from reasonlens.models.tiny import tiny_llama, tiny_qwen2

PROMPTS = ["Hello world", "The answer is 42 because", "x", "Let me think step by step about this."]
LAYER = 1


def direction(lm, seed=0, norm=8.0):
    generator = torch.Generator().manual_seed(seed)
    vector = torch.randn(lm.layers.hidden_size, generator=generator)
    return norm * vector / vector.norm()


@pytest.mark.parametrize("factory", [tiny_llama, tiny_qwen2], ids=["llama", "qwen2"])
@pytest.mark.parametrize("schedule,batch_size", [("join", 1), ("join", 4), ("static", 4)])
def test_steering_equals_hf_generate_with_the_same_forward_hook(factory, schedule, batch_size):
    lm = factory()
    vector = direction(lm)
    config = DecodeConfig(max_new_tokens=16, batch_size=batch_size, schedule=schedule)
    steered = decode(lm, PROMPTS, config, plugins=[Steering(LAYER, vector)], show_progress=False)

    def add(module, args, output):
        return replace_first(output, first_tensor(output) + vector)

    handle = lm.layers.decoder_layers[LAYER].register_forward_hook(add)
    try:
        reference = hf_greedy(lm, PROMPTS, 16)
    finally:
        handle.remove()
    plain = decode(lm, PROMPTS, config, show_progress=False)
    assert [g.token_ids for g in steered] == reference
    assert [g.token_ids for g in plain] != reference  # the vector really changes the outputs


@pytest.mark.parametrize("factory", [tiny_llama, tiny_qwen2], ids=["llama", "qwen2"])
def test_steering_at_chosen_positions_only(factory):
    lm = factory()
    vector = direction(lm, seed=1)
    prompt = PROMPTS[3]
    n_prompt = len(lm.tokenizer(prompt)["input_ids"])
    positions = {n_prompt - 1, n_prompt + 2}  # the last prompt token and the third generated one
    steered = decode(
        lm, [prompt], DecodeConfig(max_new_tokens=12), plugins=[Steering(LAYER, vector, positions=positions)]
    )[0]
    seen = [0]

    def add_at_positions(module, args, output):  # one unpadded row: columns are positions seen[0], seen[0] + 1, ...
        hidden = first_tensor(output)
        columns = torch.arange(seen[0], seen[0] + hidden.shape[1])
        seen[0] += hidden.shape[1]
        mask = torch.isin(columns, torch.tensor(sorted(positions)))[None, :, None]
        return replace_first(output, hidden + mask * vector)

    handle = lm.layers.decoder_layers[LAYER].register_forward_hook(add_at_positions)
    try:
        reference = hf_greedy(lm, [prompt], 12)[0]
    finally:
        handle.remove()
    everywhere = decode(lm, [prompt], DecodeConfig(max_new_tokens=12), plugins=[Steering(LAYER, vector)])[0]
    plain = decode(lm, [prompt], DecodeConfig(max_new_tokens=12))[0]
    assert steered.token_ids == reference
    assert steered.token_ids != plain.token_ids and steered.token_ids != everywhere.token_ids


def test_activation_patch_with_the_clean_state_is_a_no_op_and_with_another_changes_the_output(tiny_llama):
    prompt, other = PROMPTS[1], PROMPTS[3]
    ids = tiny_llama.tokenizer(prompt)["input_ids"]
    point, position = hook_name(LAYER), len(ids) - 1
    states = {}
    with torch.no_grad(), record_layers(tiny_llama.layers, [LAYER], states, last_only=False):
        tiny_llama.model(torch.tensor([ids]))
        clean = states[LAYER][0, position].clone()
        tiny_llama.model(torch.tensor([tiny_llama.tokenizer(other)["input_ids"]]))
        foreign = states[LAYER][0, -1].clone()
    config = DecodeConfig(max_new_tokens=12)
    plain = decode(tiny_llama, [prompt], config)[0]
    same = decode(tiny_llama, [prompt], config, plugins=[ActivationPatch(point, position, clean)])[0]
    patched = decode(tiny_llama, [prompt], config, plugins=[ActivationPatch(point, position, foreign)])[0]
    assert same.token_ids == plain.token_ids
    assert patched.token_ids != plain.token_ids


def test_hook_points_have_stable_names(tiny_llama):
    layers = tiny_llama.layers
    assert hook_name(2) == "blocks.2.resid_post" and hook_name("embed") == "blocks.0.resid_pre"
    assert hook_name("final") == "ln_final.out"
    module, phase, name = resolve_hook_point(layers, "blocks.-1.resid_post")
    assert (
        module is layers.decoder_layers[-1] and phase == "post" and name == f"blocks.{layers.num_layers - 1}.resid_post"
    )
    assert resolve_hook_point(layers, "blocks.0.resid_pre")[1] == "pre"
    assert resolve_hook_point(layers, "ln_final.out")[0] is layers.final_norm
    for bad in ["blocks.x.resid_post", "blocks.1.attn_out", "embed", "blocks.99.resid_post"]:
        with pytest.raises(UserError):
            resolve_hook_point(layers, bad)


class RecordPre(HiddenStateHook):
    """A read-only hook: the input of layer 0 at every prefill equals the token embeddings."""

    points = ["blocks.0.resid_pre"]

    def __init__(self):
        self.seen = []

    def __call__(self, point, hidden, context):
        self.seen.append((hidden.clone(), context.positions.clone()))
        return None


def test_read_only_hook_sees_positions_and_leaves_outputs_alone(tiny_llama):
    hook = RecordPre()
    config = DecodeConfig(max_new_tokens=4, batch_size=2, schedule="static")
    gens = decode(tiny_llama, PROMPTS[:2], config, plugins=[hook])
    assert [g.token_ids for g in gens] == [g.token_ids for g in decode(tiny_llama, PROMPTS[:2], config)]
    prefill, positions = hook.seen[0]
    lengths = [len(g.prompt_ids) for g in gens]
    width = max(lengths)
    for row, n in enumerate(lengths):  # left padding is -1, then 0..n-1
        assert positions[row].tolist() == [-1] * (width - n) + list(range(n))
        embedded = tiny_llama.model.get_input_embeddings()(torch.tensor(gens[row].prompt_ids))
        torch.testing.assert_close(prefill[row, width - n :], embedded)
    # then one forward per step, each row at its next position: token k of a row sits at prompt length + k
    assert [p.tolist() for _, p in hook.seen[1:]] == [[[n + k] for n in lengths] for k in range(3)]


def test_hooks_and_layer_rerun_are_refused_together(tiny_llama):
    from reasonlens.decode import LayerRerun

    class Always(LayerRerun):
        layer = 1

        def select(self, state, proposed):
            return torch.ones(len(state.rows), dtype=torch.bool)

    with pytest.raises(UserError, match="layer re-run"):
        decode(tiny_llama, PROMPTS[:1], DecodeConfig(max_new_tokens=2), plugins=[Always(), RecordPre()])


def test_steer_method_builds_the_steering_plugin_from_a_vector_file(tmp_path, tiny_llama):
    """The registered `steer` method (one file, interventions/methods/steer.py): options through `--set`, the
    vector from safetensors, the identity pins the file's content, and decoding equals the plug-in used directly."""
    from safetensors.torch import save_file

    from reasonlens.interventions.methods import build_plugins, get_method

    vector = direction(tiny_llama, seed=2)
    path = tmp_path / "v.safetensors"
    save_file({"vector": vector.contiguous()}, str(path))
    method = get_method("steer")
    options = method.options(settings={"vector": str(path), "layer": "-2", "scale": "0.5"})
    resolved = method.resolve(tiny_llama, options, "gsm8k", "test")
    identity = resolved.identity
    assert (identity["layer"], identity["scale"]) == (tiny_llama.layers.num_layers - 2, 0.5)
    assert len(identity["vector_sha256"]) == 64 and method.label(identity) == f"steer (layer {identity['layer']}, x0.5)"
    config = DecodeConfig(max_new_tokens=10, batch_size=2)
    via_method = decode(tiny_llama, PROMPTS, config, plugins=build_plugins(tiny_llama, identity))
    direct = decode(tiny_llama, PROMPTS, config, plugins=[Steering(identity["layer"], vector, scale=0.5)])
    assert [g.token_ids for g in via_method] == [g.token_ids for g in direct]
    save_file({"vector": torch.zeros(3)}, str(tmp_path / "short.safetensors"))
    (tmp_path / "junk.safetensors").write_text("not a tensor file")
    for settings, match in [
        ({}, "needs --set vector"),
        ({"vector": str(tmp_path / "short.safetensors")}, "has 3 dims"),
        ({"vector": str(tmp_path / "junk.safetensors")}, "cannot read"),
    ]:
        with pytest.raises(UserError, match=match):
            method.resolve(tiny_llama, method.options(settings=settings), "gsm8k", "test")
