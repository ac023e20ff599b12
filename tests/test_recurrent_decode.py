"""The recurrent-depth model through the project's one decode loop and the depth-scaling runner."""

from __future__ import annotations

import json

import pytest
import torch

from reasonlens.decode import DecodeConfig, decode
from reasonlens.models.loaded import LoadedModel, byte_level_tokenizer
from reasonlens.recurrent import ExitCriterion, RecurrentDepthConfig, RecurrentDepthLM, register_criterion
from reasonlens.recurrent.depth import IterationAccounting

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    torch.manual_seed(0)
    config = RecurrentDepthConfig(
        n_embd=32,
        n_heads=4,
        vocab_size=300,
        intermediate_size=48,
        block_size=256,
        mean_recurrence=4,
        n_layers_in_prelude=1,
        n_layers_in_recurrent_block=2,
        n_layers_in_coda=1,
    )
    tokenizer = byte_level_tokenizer(300)
    return LoadedModel(
        model=RecurrentDepthLM(config).eval(), tokenizer=tokenizer, layers=None, name="tiny-rec", spec="tiny-rec"
    )


def _greedy_alone(model, ids: list[int], n: int, **kwargs) -> list[int]:
    """Test-only reference: batch of one, full forward at every step (no cache)."""
    seq = torch.tensor([ids])
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(seq, **kwargs).logits[0, -1].argmax())
            out.append(nxt)
            seq = torch.cat([seq, torch.tensor([[nxt]])], 1)
    return out


def test_decode_loop_batched_left_padded_equals_unbatched_full_forward(lm):
    prompts = ["3+4=", "a longer prompt here"]
    config = DecodeConfig(max_new_tokens=6, batch_size=2, forward_kwargs={"num_steps": 3, "init_scale": 0.0})
    generations = decode(lm, prompts, config)
    for prompt, gen in zip(prompts, generations):
        ids = lm.tokenizer(prompt)["input_ids"]
        expected = _greedy_alone(lm.model, ids, len(gen.token_ids), num_steps=3, init_scale=0.0)
        assert gen.token_ids == expected


def test_iteration_accounting_fixed_and_adaptive(lm):
    prompts = ["abc", "xyz!"]
    fixed = IterationAccounting()
    decode(
        lm,
        prompts,
        DecodeConfig(max_new_tokens=5, batch_size=2, forward_kwargs={"num_steps": 4, "init_scale": 0.0}),
        plugins=[fixed],
    )
    assert all(v == [4] * 5 for v in fixed.per_key.values()) and set(fixed.per_key) == {0, 1}
    adaptive = IterationAccounting()
    decode(
        lm,
        prompts,
        DecodeConfig(
            max_new_tokens=5,
            batch_size=2,
            forward_kwargs={"num_steps": 12, "init_scale": 0.0, "exit_criterion": "latent-diff", "exit_threshold": 0.3},
        ),
        plugins=[adaptive],
    )
    used = [i for v in adaptive.per_key.values() for i in v]
    assert len(used) == 10 and all(1 <= i <= 12 for i in used) and min(used) < 12


def test_adaptive_threshold_zero_in_decode_loop_equals_fixed(lm):
    prompts = ["hello", "hi"]
    fixed = decode(
        lm, prompts, DecodeConfig(max_new_tokens=5, batch_size=2, forward_kwargs={"num_steps": 5, "init_scale": 0.0})
    )
    zero = decode(
        lm,
        prompts,
        DecodeConfig(
            max_new_tokens=5,
            batch_size=2,
            forward_kwargs={"num_steps": 5, "init_scale": 0.0, "exit_criterion": "kl", "exit_threshold": 0.0},
        ),
    )
    assert [g.token_ids for g in fixed] == [g.token_ids for g in zero]


def test_depth_command_writes_summary(lm, tmp_path):
    from reasonlens.recurrent.depth import DepthSpec, run_depth

    spec = DepthSpec(
        model="tiny-rec",
        dataset="synthetic-hops",
        out=tmp_path / "depth",
        steps=(1, 3),
        n=3,
        exit_criterion="latent-diff",
        threshold=0.3,
        max_new_tokens=4,
        batch_size=3,
    )
    summary = run_depth(spec, lm=lm, quiet=True)
    on_disk = json.loads((tmp_path / "depth" / "summary.json").read_text())
    assert on_disk["steps"].keys() == {"1", "3"}
    assert on_disk["steps"]["3"]["mean_iterations_per_token"] == 3.0
    assert on_disk["steps"]["1"]["n"] == 3
    adaptive = summary["adaptive"]
    assert adaptive["max_steps"] == 3 and 1.0 <= adaptive["mean_iterations_per_token"] <= 3.0
    assert sum(adaptive["iterations_histogram"].values()) == adaptive["tokens"]
    # resumable: a second call finds everything done and returns the same numbers
    again = run_depth(spec, lm=lm, quiet=True)
    assert again["steps"] == summary["steps"]


@register_criterion
class FirstIteration(ExitCriterion):
    """A criterion registered outside exit.py, as a new file would: fires after the first iteration."""

    name = "test-first-iteration"
    default_threshold = 0.25

    def reset(self, initial_state):
        pass

    def check(self, state, logits):
        value = torch.zeros(state.shape[0])
        return value, value < self.threshold


def test_a_criterion_registered_elsewhere_runs_in_depth_with_its_default_threshold(lm, tmp_path):
    """The registration line is all a new criterion needs: `depth --exit NAME` knows its name and default."""
    from reasonlens.recurrent.depth import DepthSpec, run_depth

    spec = DepthSpec(
        model="tiny-rec",
        dataset="synthetic-hops",
        out=tmp_path / "depth",
        steps=(4,),
        n=2,
        exit_criterion="test-first-iteration",
        max_new_tokens=3,
        batch_size=2,
    )
    adaptive = run_depth(spec, lm=lm, quiet=True)["adaptive"]
    assert adaptive["criterion"] == "test-first-iteration" and adaptive["threshold"] == 0.25
    assert adaptive["mean_iterations_per_token"] == 1.0 and adaptive["max_steps"] == 4
    with pytest.raises(ValueError, match="registered twice"):
        register_criterion(FirstIteration)


def test_latent_items_from_a_depth_run_directory(lm, tmp_path):
    from reasonlens.recurrent.depth import DepthSpec, run_depth
    from reasonlens.recurrent.latent import items_from_source
    from reasonlens.runs.rundir import RunDir

    run_depth(
        DepthSpec(
            model="tiny-rec",
            dataset="synthetic-hops:2",
            out=tmp_path / "d",
            steps=(2,),
            n=2,
            max_new_tokens=3,
            batch_size=2,
        ),
        lm=lm,
        quiet=True,
    )
    model, items = items_from_source(str(tmp_path / "d" / "r2"))
    results = RunDir(tmp_path / "d" / "r2").results()
    assert model == "tiny-rec" and len(items) == 2
    assert items[0].text == results[0]["prompt"] + results[0]["completion"] and items[0].gold == results[0]["gold"]
    assert results[0]["iterations"] == [2] * results[0]["n_tokens"]
