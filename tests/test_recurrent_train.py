"""Randomized-depth training: depth sampler, truncated backprop, schedule, checkpoints and resume."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from reasonlens.errors import UserError
from reasonlens.models.loaded import byte_level_tokenizer
from reasonlens.recurrent import RecurrentDepthConfig, RecurrentDepthLM
from reasonlens.recurrent.train import (
    Example,
    TrainConfig,
    load_train_file,
    lr_factor,
    make_batch,
    sample_depth,
    split_depth,
    train_recurrent,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_config(vocab: int = 61) -> RecurrentDepthConfig:
    return RecurrentDepthConfig(
        n_embd=32,
        n_heads=4,
        vocab_size=vocab,
        intermediate_size=48,
        block_size=128,
        mean_recurrence=4,
        mean_backprop_depth=2,
        n_layers_in_prelude=1,
        n_layers_in_recurrent_block=2,
        n_layers_in_coda=1,
    )


def test_depth_sampler_mean_and_support():
    generator = torch.Generator().manual_seed(0)
    draws = [sample_depth(8, generator=generator) for _ in range(4000)]
    assert min(draws) >= 1
    assert 8.5 < statistics.mean(draws) < 9.5  # E[r] = mean + 1
    assert split_depth(3, 8) == (0, 3) and split_depth(20, 8) == (12, 8) and split_depth(1, 8) == (0, 1)


def test_the_model_samples_its_training_depth_with_the_trainers_sampler_and_split():
    model = RecurrentDepthLM(tiny_config())
    for seed in range(20):
        torch.manual_seed(seed)
        drawn = model.sample_num_steps()
        torch.manual_seed(seed)
        assert drawn == split_depth(sample_depth(4), 2)
        assert drawn[1] == max(1, min(2, sum(drawn)))  # k = max(1, min(backprop, r)): never 0 with-grad iterations


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def test_truncated_backprop_flows_only_through_last_k_iterations_and_into_prelude():
    torch.manual_seed(0)
    model = RecurrentDepthLM(tiny_config()).train()
    ids = torch.randint(0, 61, (2, 6))
    labels = torch.randint(0, 61, (2, 6))
    n, k = 3, 2

    assert not model(ids, num_steps=(n, 0), init_scale=0.0).final_state.requires_grad
    out = model(ids, num_steps=(n, k), labels=labels, init_scale=0.0)
    assert out.final_state.requires_grad
    out.loss.backward()
    truncated = _grads(model)
    assert truncated["transformer.prelude.0.attn.Wqkv.weight"].abs().sum() > 0
    assert truncated["transformer.core_block.0.mlp.fc.weight"].abs().sum() > 0
    assert truncated["transformer.adapter.weight"].abs().sum() > 0

    # same gradients as running the first n iterations, detaching, then k iterations with grad
    model.zero_grad()
    with torch.no_grad():
        state_n = model(ids, num_steps=(n, 0), init_scale=0.0).final_state
    model(ids, num_steps=(0, k), labels=labels, input_states=state_n.detach()).loss.backward()
    manual = _grads(model)
    for name in truncated:
        assert torch.allclose(truncated[name], manual[name], atol=1e-6), name

    # full backprop through all n + k iterations gives different core gradients
    model.zero_grad()
    model(ids, num_steps=(0, n + k), labels=labels, init_scale=0.0).loss.backward()
    full = _grads(model)
    assert not torch.allclose(
        full["transformer.core_block.0.mlp.fc.weight"], truncated["transformer.core_block.0.mlp.fc.weight"], atol=1e-6
    )


def test_int_num_steps_runs_without_gradient_like_the_reference():
    model = RecurrentDepthLM(tiny_config()).train()
    out = model(torch.randint(0, 61, (1, 4)), num_steps=3, init_scale=0.0, output_latents=True)
    assert not out.iteration_states.requires_grad and not out.final_state.requires_grad


def test_schedule_warmup_then_cosine():
    config = TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, config) == pytest.approx(0.1)
    assert lr_factor(9, config) == pytest.approx(1.0)
    assert lr_factor(10, config) == pytest.approx(1.0)
    assert lr_factor(55, config) == pytest.approx(0.55)
    assert lr_factor(100, config) == pytest.approx(0.1)


def test_make_batch_labels_shifted_and_prompt_masked():
    ids, labels = make_batch([Example([5, 6, 7, 8], loss_from=2), Example([9, 10], loss_from=0)], [0, 1], 16, 0)
    assert ids.tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert labels.tolist() == [[-100, 7, 8, -100], [10, -100, -100, -100]]


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"prompt": f"{a}+{b}=", "completion": f"{a + b}"} for a in range(5) for b in range(5)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_training_reduces_loss_and_writes_loadable_model(tmp_path, data_file):
    config = TrainConfig(
        steps=24,
        batch_size=8,
        seq_len=16,
        lr=1e-2,
        warmup_steps=5,
        checkpoint_every=20,
        log_every=5,
        mean_recurrence=3,
        backprop_depth=2,
    )
    result = train_recurrent(tiny_config(300), config, str(data_file), tmp_path / "run", quiet=True)
    losses = [h["loss"] for h in result.history]
    assert result.steps == 24 and losses[-1] < losses[0]
    loaded = RecurrentDepthLM.from_pretrained(tmp_path / "run")
    assert (tmp_path / "run" / "tokenizer.json").is_file() or (tmp_path / "run" / "tokenizer_config.json").is_file()
    assert (tmp_path / "run" / "checkpoint" / "optimizer.safetensors").is_file()
    assert not list((tmp_path / "run").rglob("*.pt")) and not list((tmp_path / "run").rglob("*.bin"))
    assert loaded.config.n_embd == 32


def test_resume_continues_exactly(tmp_path, data_file):
    config = TrainConfig(
        steps=8,
        batch_size=4,
        seq_len=16,
        lr=1e-2,
        warmup_steps=2,
        checkpoint_every=4,
        log_every=1,
        mean_recurrence=3,
        backprop_depth=2,
    )
    straight = train_recurrent(tiny_config(300), config, str(data_file), tmp_path / "a", quiet=True)
    first = train_recurrent(tiny_config(300), config, str(data_file), tmp_path / "b", quiet=True, max_steps_this_call=5)
    assert first.steps == 5 and not (tmp_path / "b" / "model.safetensors").exists()
    resumed = train_recurrent(tiny_config(300), config, str(data_file), tmp_path / "b", quiet=True)
    assert resumed.steps == 8
    a = RecurrentDepthLM.from_pretrained(tmp_path / "a").state_dict()
    b = RecurrentDepthLM.from_pretrained(tmp_path / "b").state_dict()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]


def test_train_config_file_errors(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"train": {"steps": 1, "bogus": 2}, "model": {}}))
    with pytest.raises(UserError, match="bogus"):
        load_train_file(bad)
    bad.write_text(json.dumps({"train": {"steps": 1}}))
    with pytest.raises(UserError, match="model"):
        load_train_file(bad)
    good = tmp_path / "g.json"
    good.write_text(json.dumps({"model": tiny_config(300).to_dict(), "train": {"steps": 3}}))
    model_config, train_config, extra = load_train_file(good)
    assert model_config.n_embd == 32 and train_config.steps == 3 and extra["init"] is None
    assert byte_level_tokenizer(300) is not None


def test_organism_preset():
    model_config, train_config, extra = load_train_file("organism-recurrent")
    assert model_config.n_embd == 64 and model_config.vocab_size == 416 and train_config.target == "direct"
    assert model_config.n_layers_in_recurrent_block == 1 and model_config.mean_recurrence == 6
