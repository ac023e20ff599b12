"""Decode throughput on a length-skewed workload: HF generate (static batches) vs our loop, static and rows joining,
each with and without hidden-state capture of 4 layers.

Workload: 64 prompts (GSM8K question openings of ragged length) whose traces end with EOS at lengths drawn
from a long-tailed log-normal distribution (`--workload skewed`, seeded; median 16 tokens, up to 256 at the
tail) or all at the same length (`--workload uniform`, the negative control: joining cannot help there).
The EOS is forced at each sample's length by a logits processor in every variant, so all variants produce
exactly the same tokens and only the schedule differs. Model: a random Llama config big enough that the
forward pass, not Python, is most of a step (d=256, 6 layers).

Capture writes every finished sample's 4-layer states to a safetensors shard through the background writer
(`RunDir.write_states` in `BackgroundWriter`, as `reasonlens generate` does); HF generate "with capture"
returns all hidden states (`output_hidden_states`) and copies the same 4 layers to the CPU.

Every configuration runs in the same process, interleaved over `--repeats`; figures are medians. Each run
is timed by three clocks: `main`, the decoding thread's CPU time (what bounds decode speed when the writer
thread has a core of its own: any idle multi-core machine, every GPU box); `cpu`, the whole process's CPU
time (the writer thread's work counted against capture: the figure for a machine with no spare core);
`wall`. On a shared, oversubscribed machine wall time mostly measures the other jobs. Ratios use `--clock`
(default main); all three are printed. Only same-run ratios mean something. Ends with one line:
`skewed batch 8: joining/static-hf X.XXx; capture4/no-capture Y.YYx` (capture on our joining loop).

    python benchmarks/bench_decode.py [--workload skewed|uniform] [--batches 8,32] [--repeats 3] [--variants all]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList
from transformers import LogitsProcessor as HFLogitsProcessor

from reasonlens.data import load_problems
from reasonlens.decode import DecodeConfig, LogitsProcessor, decode
from reasonlens.decode.capture import HiddenStateCapture
from reasonlens.models.loaded import DTYPES, LoadedModel, byte_level_tokenizer
from reasonlens.runs.rundir import RunDir
from reasonlens.runs.writer import BackgroundWriter

N_PROMPTS = 64
LAYERS = [1, 3, 4, "final"]


def bench_model(seed: int = 0) -> LoadedModel:
    """A random Llama (d=256, 6 layers, GQA) on the byte-level tokenizer: tiny, but not trivially so."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    return LoadedModel.wrap(model, byte_level_tokenizer(), name="bench-llama", spec="bench-llama")


def workload(kind: str, n: int = N_PROMPTS, seed: int = 0) -> tuple[list[str], list[int]]:
    """Prompts (question openings of 24-96 characters) and the trace length of each sample."""
    rng = random.Random(seed)
    questions = [p.question for p in load_problems("gsm8k", n=n)]
    prompts = [q[: rng.randint(24, 96)] for q in questions]
    if kind == "uniform":
        lengths = [26] * n
    else:
        lengths = [min(256, max(4, round(math.exp(rng.gauss(math.log(16), 1.0))))) for _ in range(n)]
    return prompts, lengths


class EosAtLength(LogitsProcessor):
    """Our loop: sample `key` ends with EOS as its `lengths[key]`-th token."""

    def __init__(self, lengths: list[int], eos: int):
        self.lengths, self.eos = lengths, eos

    def __call__(self, logits, state):
        for row in state.rows:
            if row.n_generated == self.lengths[row.key] - 1:
                logits[row.row] = float("-inf")
                logits[row.row, self.eos] = 0.0
        return logits


class HFEosAtLength(HFLogitsProcessor):
    """HF generate: the same rule for one static batch (rows are the batch's samples in order)."""

    def __init__(self, lengths: list[int], prompt_width: int, eos: int):
        self.lengths, self.width, self.eos = torch.tensor(lengths), prompt_width, eos

    def __call__(self, input_ids, scores):
        at = (self.lengths - 1 == input_ids.shape[1] - self.width).nonzero().flatten()
        if at.numel():
            scores[at] = float("-inf")
            scores[at, self.eos] = 0.0
        return scores


def run_hf(lm, prompts, lengths, batch, capture) -> int:
    eos = lm.eos_token_ids()[0]
    count = 0
    for start in range(0, len(prompts), batch):
        part, budget = prompts[start : start + batch], lengths[start : start + batch]
        enc = lm.tokenizer(part, return_tensors="pt", padding=True)
        width = enc["input_ids"].shape[1]
        with torch.inference_mode():
            out = lm.model.generate(
                **enc,
                max_new_tokens=max(budget),
                do_sample=False,
                pad_token_id=0,
                logits_processor=LogitsProcessorList([HFEosAtLength(budget, width, eos)]),
                output_hidden_states=capture,
                return_dict_in_generate=True,
            )
        if capture:  # the 4 layers' state that predicted each token, on the CPU (index 0 of a step = embeddings)
            keep = [k + 1 if k != "final" else -1 for k in LAYERS]
            [torch.stack([step[k][:, -1] for k in keep], 1).cpu() for step in out.hidden_states]
        for row in out.sequences[:, width:].tolist():
            count += next((i + 1 for i, t in enumerate(row) if t == eos), len(row))
    return count


def run_ours(lm, prompts, lengths, batch, schedule, capture, out_dir: Path, dtype: str) -> int:
    config = DecodeConfig(max_new_tokens=max(lengths), batch_size=batch, schedule=schedule, window=64)
    plugins = [EosAtLength(lengths, lm.eos_token_ids()[0])]
    run = RunDir(out_dir)
    with BackgroundWriter() as writer:
        if capture:

            def sink(row, tensors):
                size = sum(t.numel() * t.element_size() for t in tensors.values())
                writer.submit(lambda: run.write_states(int(row.key), tensors, {"index": str(row.key)}), size)

            plugins.append(HiddenStateCapture(LAYERS, sink, DTYPES[dtype]))
        gens = decode(lm, prompts, config, plugins=plugins)
    return sum(g.n_tokens for g in gens)


ALL_VARIANTS = "hf,hf+capture4,static,static+capture4,join,join+capture4"
CLOCKS = {"main": time.thread_time, "cpu": time.process_time, "wall": time.perf_counter}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("skewed", "uniform"), default="skewed")
    parser.add_argument("--batches", default="8", help="comma-separated batch sizes, e.g. 8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the writer thread is extra)")
    parser.add_argument("--capture-dtype", choices=tuple(DTYPES), default="fp32")
    parser.add_argument("--clock", choices=CLOCKS, default="main", help="clock of the ratios (all are printed)")
    parser.add_argument(
        "--variants", default="hf,join,join+capture4", help=f"comma-separated, or 'all' ({ALL_VARIANTS})"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = bench_model()
    prompts, lengths = workload(args.workload)
    total = sum(lengths)
    print(
        f"workload {args.workload}: {len(prompts)} prompts, trace lengths min {min(lengths)} median "
        f"{statistics.median(lengths):.0f} mean {total / len(lengths):.1f} max {max(lengths)}, {total} tokens; "
        f"capture {len(LAYERS)} layers {args.capture_dtype}; {args.threads} torch thread(s); "
        f"medians of {args.repeats} interleaved repeats"
    )
    wanted = (ALL_VARIANTS if args.variants == "all" else args.variants).split(",")
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        for batch in [int(b) for b in args.batches.split(",")]:
            fns = {
                "hf": lambda c: run_hf(lm, prompts, lengths, batch, c),
                "static": lambda c: run_ours(
                    lm, prompts, lengths, batch, "static", c, Path(tmp) / "s", args.capture_dtype
                ),
                "join": lambda c: run_ours(lm, prompts, lengths, batch, "join", c, Path(tmp) / "j", args.capture_dtype),
            }
            variants = {name: (fns[name.split("+")[0]], name.endswith("+capture4")) for name in wanted}
            # warm-up: first calls allocate and initialise lazily
            run_hf(lm, prompts[:batch], [4] * batch, batch, True)
            run_ours(lm, prompts[:batch], [4] * batch, batch, "join", True, Path(tmp) / "w", args.capture_dtype)
            rates: dict[str, dict[str, list[float]]] = {c: {k: [] for k in variants} for c in CLOCKS}
            for _ in range(args.repeats):
                for name, (fn, capture) in variants.items():
                    start = {c: CLOCKS[c]() for c in CLOCKS}
                    n = fn(capture)
                    for c in CLOCKS:
                        rates[c][name].append(n / (CLOCKS[c]() - start[c]))
                    if n != total:
                        print(f"  note: {name} produced {n} tokens, the workload has {total}")
            medians = {c: {k: statistics.median(v) for k, v in rates[c].items()} for c in CLOCKS}
            med = medians[args.clock]
            base = med.get("hf")
            print(f"batch {batch}: tok/s, median [min-max] of the {args.clock} clock; medians of the others")
            for name, value in med.items():
                spread = f"[{min(rates[args.clock][name]):.0f}-{max(rates[args.clock][name]):.0f}]"
                ratio = f" {value / base:5.2f}x hf" if base else ""
                others = "  ".join(f"{c} {medians[c][name]:7.1f}" for c in CLOCKS if c != args.clock)
                print(f"  {name:16s} {value:8.1f} {spread:>13s}{ratio}   {others}")
            for ours in ("static", "join"):
                if ours in med and f"{ours}+capture4" in med:
                    print(
                        f"  capture4/no-capture ({ours}): "
                        + ", ".join(f"{medians[c][f'{ours}+capture4'] / medians[c][ours]:.2f}x {c}" for c in CLOCKS)
                    )
            if "static" in med and "join" in med:
                print(f"  join/static (ours): {med['join'] / med['static']:.2f}x")
            summary[batch] = med
    med = summary.get(8)
    if med and "join" in med and "hf" in med and "join+capture4" in med:
        print(
            f"{args.workload} batch 8: joining/static-hf {med['join'] / med['hf']:.2f}x; "
            f"capture4/no-capture {med['join+capture4'] / med['join']:.2f}x"
        )


if __name__ == "__main__":
    main()
