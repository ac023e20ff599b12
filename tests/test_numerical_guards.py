"""Numerical guards: NaN/Inf in one sample's logits or captured states fails that sample, with the reason, and
the run goes on; the other samples (even in the same batch) are exactly what a clean run produces.

The faults are real: a forward hook on a real tiny Llama poisons one batch row at one decode step.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import pytest
import torch

from reasonlens.decode import DecodeConfig, decode
from reasonlens.runs import RunDir, RunSpec, execute

N = 4
POISON_CALL = 3  # the third forward of the first batch: decode step 2 (static schedule: forward 1 is the prefill)
SCHEDULE = "static"  # counting forwards assumes it; the guard with rows joining: tests/test_decode.py
POISON_ROW = 1  # batch row 1 of the first batch = dataset index 1


@contextmanager
def poisoned(module: torch.nn.Module, edit):
    """Apply `edit(output)` to `module`'s output at its POISON_CALL-th forward, on batch row POISON_ROW only."""
    calls = {"n": 0}

    def hook(mod, args, output):
        calls["n"] += 1
        if calls["n"] != POISON_CALL:
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden.clone()
        hidden[POISON_ROW, -1] = edit(hidden[POISON_ROW, -1])
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = module.register_forward_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def spec(out, **kw) -> RunSpec:
    base = dict(
        out=out,
        model="tiny-llama",
        dataset="gsm8k",
        n=N,
        layers="1,final",
        decode=DecodeConfig(max_new_tokens=8, batch_size=2, schedule=SCHEDULE),
    )
    base.update(kw)
    return RunSpec(**base)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, tiny_llama):
    out = tmp_path_factory.mktemp("clean") / "run"
    execute(spec(out), lm=tiny_llama, quiet=True)
    results = RunDir(out).results()
    assert results[POISON_ROW]["n_tokens"] > POISON_CALL  # the fault lands mid-generation, not after a stop
    return out


def fill(value: float):
    return lambda row: torch.full_like(row, value)


def one_entry(value: float):
    def edit(row):
        row = row.clone()
        row[..., 7] = value
        return row

    return edit


@pytest.mark.parametrize(
    "edit,label", [(fill(math.nan), "all NaN"), (one_entry(math.inf), "one +Inf"), (one_entry(math.nan), "one NaN")]
)
def test_nonfinite_logits_fail_the_sample_and_the_run_goes_on(tmp_path, tiny_llama, clean_run, edit, label):
    out = tmp_path / "run"
    with poisoned(tiny_llama.layers.lm_head, edit) as calls:
        summary = execute(spec(out), lm=tiny_llama, quiet=True)
    assert calls["n"] > POISON_CALL
    run, clean = RunDir(out), RunDir(clean_run)
    results = run.results()
    assert [r["index"] for r in results] == list(range(N))  # the run went on to the end
    bad = results[POISON_ROW]
    assert bad["status"] == "failed" and bad["stop_reason"] == "numerical"
    assert bad["error"] == "nonfinite logits detected" and bad["correct"] is None and bad["extracted"] is None
    assert {"type": "nonfinite_logits", "step": POISON_CALL - 1} in bad["events"]
    assert bad["n_tokens"] == POISON_CALL  # stopped at the poisoned step
    assert run.has_states(POISON_ROW)  # the states up to the fault are kept for inspection
    for index in set(range(N)) - {POISON_ROW}:  # the row beside it in the batch, and the later batches
        mine, theirs = results[index], clean.results()[index]
        assert mine["status"] == theirs["status"] and mine["completion"] == theirs["completion"]
        assert torch.equal(run.load_states(index)["layer.1"], clean.load_states(index)["layer.1"])
    assert summary["n"] == N and summary["n_failed"] == 1


def test_nonfinite_captured_state_fails_the_sample(tmp_path, tiny_llama, clean_run):
    """A state that overflows its fp16 storage (finite in the fp32 model, so the logits are fine) is caught."""
    out = tmp_path / "run"
    with poisoned(tiny_llama.layers.decoder_layers[1], lambda row: row * 1e7):
        summary = execute(spec(out, dtype="fp16"), lm=tiny_llama, quiet=True)
    results = RunDir(out).results()
    assert [r["index"] for r in results] == list(range(N))
    bad = results[POISON_ROW]
    assert bad["status"] == "failed" and bad["error"] == "nonfinite state detected"
    assert bad["stop_reason"] != "numerical"  # the logits stayed finite: generation was not cut short
    assert {"type": "nonfinite_state"} in bad["events"]
    states = RunDir(out).load_states(POISON_ROW)["layer.1"]
    assert not torch.isfinite(states[POISON_CALL - 1]).all() and torch.isfinite(states[: POISON_CALL - 1]).all()
    assert all(r["status"] != "failed" for r in results if r["index"] != POISON_ROW)
    assert summary["n_failed"] == 1 and summary["accuracy"] == summary["n_correct"] / N


def test_nan_in_a_decoder_layer_is_reported_on_both_logits_and_states(tmp_path, tiny_llama):
    out = tmp_path / "run"
    with poisoned(tiny_llama.layers.decoder_layers[1], fill(math.nan)):
        execute(spec(out), lm=tiny_llama, quiet=True)
    bad = RunDir(out).results()[POISON_ROW]
    kinds = [e["type"] for e in bad["events"]]
    assert bad["status"] == "failed" and bad["stop_reason"] == "numerical"
    assert "nonfinite_logits" in kinds and "nonfinite_state" in kinds


def test_decode_loop_stops_only_the_poisoned_row(tiny_llama):
    prompts = ["Question: 2+2?", "Question: 3+5?", "Question: 9-4?"]
    config = DecodeConfig(max_new_tokens=8, batch_size=3, schedule=SCHEDULE)
    clean = decode(tiny_llama, prompts, config)
    with poisoned(tiny_llama.layers.lm_head, fill(math.inf)):
        hit = decode(tiny_llama, prompts, config)
    assert hit[POISON_ROW].stop_reason == "numerical"
    assert hit[POISON_ROW].token_ids[: POISON_CALL - 1] == clean[POISON_ROW].token_ids[: POISON_CALL - 1]
    for row in (0, 2):
        assert hit[row].token_ids == clean[row].token_ids and hit[row].stop_reason == clean[row].stop_reason
