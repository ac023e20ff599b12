"""Crash safety: SIGKILL a real `reasonlens generate` at >= 20 seeded points, resume each time, and compare the
final run with an uninterrupted one (same results, tensor-equal shards, no loss, no duplicates).

Each interrupted attempt is a separate process running `reasonlens.cli.main(["generate", ...])`. To keep the
test fast, the processes are forked from one "zygote" interpreter that has already imported reasonlens (a
fresh interpreter costs seconds of import time per attempt); one attempt and the reference run use a fresh
`python -m reasonlens.cli` to cover the real entry point. Kill points:

- `timer`: SIGKILL from outside after a random delay (lands anywhere: start-up, decoding, writing);
- `step`: at the n-th decode step (during generation);
- `tmp-write`: half-way through writing the n-th temp file of an atomic write (a torn shard/manifest/summary);
- `fsync`, `before-replace`, `after-replace`: around the n-th fsync / rename of the run's file primitives;
- `torn-append`: after a random prefix of the n-th results.jsonl append reached the file.

The deterministic points are injected by wrapping `os`, `open` and the decode call inside the killed process
only (no hook in the library). Every kill is a real SIGKILL of the process: nothing is flushed or cleaned up.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from reasonlens.runs import RunDir
from reasonlens.runs.io import read_checked_jsonl

N_SAMPLES = 64
BATCH = 2
MAX_NEW_TOKENS = 8
KILL_KINDS = ("timer", "step", "tmp-write", "fsync", "before-replace", "after-replace", "torn-append")
KILLS_PER_KIND = 3  # 21 kills in all, plus the kill of the fresh interpreter
MAX_ATTEMPTS = 45

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}

ZYGOTE = r'''
import json, os, signal, sys, time
import torch
torch.set_num_threads(1)
import reasonlens.cli as cli
import reasonlens.runs.io as rio
import reasonlens.runs.runner as runner
# Warm the lazy imports (transformers model classes, datasets, grader) once, so each fork starts in well under 1 s.
from reasonlens.data import load_problems
from reasonlens.models.tiny import tiny_llama
import reasonlens.eval
tiny_llama()
load_problems("gsm8k", n=1)

def install(plan):
    """Arm one kill point in this (forked) process."""
    counts = {}
    def tick(kind):
        counts[kind] = counts.get(kind, 0) + 1
        return plan["kind"] == kind and counts[kind] == plan["n"]
    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    class Torn:
        """A file whose n-th write stops part-way and kills the process."""
        def __init__(self, handle, kind):
            self._handle, self._kind = handle, kind
        def write(self, data):
            if tick(self._kind):
                self._handle.write(data[:int(len(data) * plan["cut"])])
                self._handle.flush()
                die()
            return self._handle.write(data)
        def __getattr__(self, name):
            return getattr(self._handle, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self._handle.__exit__(*exc)

    class Os:
        def __getattr__(self, name):
            return getattr(os, name)
        def fdopen(self, fd, *args, **kwargs):
            return Torn(os.fdopen(fd, *args, **kwargs), "tmp-write")
        def fsync(self, fd):
            if tick("fsync"):
                die()
            return os.fsync(fd)
        def replace(self, src, dst):
            if tick("before-replace"):
                die()
            os.replace(src, dst)
            if tick("after-replace"):
                die()

    def open_(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        return Torn(handle, "torn-append") if "a" in mode else handle

    rio.os = Os()
    rio.open = open_
    decode_batch = runner.decode_batch
    def counting_decode_batch(*args, progress=None, **kwargs):
        def step(active):
            if tick("step"):
                die()
            if progress is not None:
                progress(active)
        return decode_batch(*args, progress=step, **kwargs)
    runner.decode_batch = counting_decode_batch

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    pid = os.fork()
    if pid == 0:
        os.dup2(log, 1)
        os.dup2(log, 2)
        if job["plan"]["kind"] != "timer":
            install(job["plan"])
        code = 0
        try:
            cli.main(job["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(log)
    deadline = time.monotonic() + job["plan"].get("delay", 1e9)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            done, status = os.waitpid(pid, 0)
            break
        time.sleep(0.005)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    code = None if killed else os.waitstatus_to_exitcode(status)
    print(json.dumps({"killed": killed, "code": code}), flush=True)
'''


def generate_argv(out: Path) -> list[str]:
    return [
        "generate",
        "--model",
        "tiny-llama",
        "--dataset",
        "gsm8k",
        "--limit",
        str(N_SAMPLES),
        "--batch-size",
        str(BATCH),
        "--max-new-tokens",
        str(MAX_NEW_TOKENS),
        "--layers",
        "1,-1,final",
        "--out",
        str(out),
    ]


class Zygote:
    """A pre-imported interpreter that forks one `generate` attempt per job, optionally killing it."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV, text=True
        )
        self.ready = False

    def wait_ready(self) -> None:
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}
        self.ready = True

    def attempt(self, argv: list[str], plan: dict, log: Path) -> dict:
        if not self.ready:
            self.wait_ready()
        self.proc.stdin.write(json.dumps({"argv": argv, "plan": plan, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "zygote died"
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def draw_plan(kind: str, rng: random.Random) -> dict:
    """A kill point early in the remaining work, so that most attempts die with work still to do."""
    n = {
        "timer": 0,
        "step": rng.randint(1, 2 * MAX_NEW_TOKENS),
        "tmp-write": rng.randint(1, 3),
        "fsync": rng.randint(1, 6),
        "before-replace": rng.randint(1, 3),
        "after-replace": rng.randint(1, 3),
        "torn-append": rng.randint(1, 2),
    }[kind]
    plan = {"kind": kind, "n": n, "cut": rng.uniform(0.05, 0.95)}
    if kind == "timer":
        plan["delay"] = rng.uniform(0.05, 0.6)
    return plan


def shard_names(run: Path) -> list[str]:
    states = run / "states"
    return (
        sorted(p.name for p in states.iterdir() if re.fullmatch(r"\d{6}\.safetensors", p.name))
        if states.is_dir()
        else []
    )


def assert_consistent(run_path: Path) -> int:
    """Invariants that must hold after any crash: a valid result implies a complete shard; no shard is torn."""
    run = RunDir(run_path)
    if not run.manifest_path.exists():
        assert not run.results_path.exists()
        return 0
    assert run.manifest["format_version"] == 1  # never torn: written atomically
    records, _ = read_checked_jsonl(run.results_path)
    indices = [r["index"] for r in records]
    assert len(indices) == len(set(indices)), f"duplicate result records: {indices}"
    for name in shard_names(run_path):
        tensors = load_file(run_path / "states" / name)  # raises if a shard is torn
        assert set(tensors) >= {"layer.1", "layer.3", "layer.final", "token_ids"}
    for index in indices:
        assert run.has_states(index), f"result {index} is on disk but its shard is not"
    return len(indices)


def comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("seconds", "crc")}


def test_sigkill_at_random_points_then_resume_equals_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    ref_proc = subprocess.Popen(
        [sys.executable, "-m", "reasonlens.cli", *generate_argv(reference)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_path = tmp_path / "run"
    argv = generate_argv(run_path)
    rng = random.Random(8)
    killed_by: dict[str, int] = {kind: 0 for kind in KILL_KINDS}
    zygote = Zygote()  # starts importing while the first attempt runs

    # One attempt through a fresh `python -m reasonlens.cli`, killed once it has written its first result.
    fresh_log = open(tmp_path / "fresh.log", "wb")
    fresh = subprocess.Popen(
        [sys.executable, "-m", "reasonlens.cli", *argv], env=ENV, stdout=fresh_log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 240
    while fresh.poll() is None and time.monotonic() < deadline:
        if (run_path / "results.jsonl").exists() and (run_path / "results.jsonl").stat().st_size > 0:
            time.sleep(rng.uniform(0.0, 0.3))
            break
        time.sleep(0.01)
    fresh.send_signal(signal.SIGKILL)
    fresh_log.close()
    assert fresh.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "fresh.log").read_text()[-3000:]
    assert_consistent(run_path)
    try:
        kills_with_work_left = 0
        for attempt in range(MAX_ATTEMPTS):
            wanted = [kind for kind in KILL_KINDS if killed_by[kind] < KILLS_PER_KIND]
            if not wanted:
                break
            kind = rng.choice(wanted)
            done_before = assert_consistent(run_path)
            outcome = zygote.attempt(argv, draw_plan(kind, rng), tmp_path / f"attempt{attempt}.log")
            if outcome["killed"]:
                killed_by[kind] += 1
                kills_with_work_left += done_before < N_SAMPLES
            else:
                assert outcome["code"] == 0, (tmp_path / f"attempt{attempt}.log").read_text()[-2000:]
            assert_consistent(run_path)
        final = zygote.attempt(argv, {"kind": "none", "n": 0}, tmp_path / "final.log")
        assert final == {"killed": False, "code": 0}, (tmp_path / "final.log").read_text()[-2000:]
    finally:
        zygote.close()
    out, err = ref_proc.communicate(timeout=600)
    assert ref_proc.returncode == 0, err[-2000:]

    assert all(count >= KILLS_PER_KIND for count in killed_by.values()), killed_by
    assert kills_with_work_left >= 20, (kills_with_work_left, killed_by)

    ref, run = RunDir(reference), RunDir(run_path)
    # The same result set, nothing lost, and exactly one valid record per index in the raw file.
    raw, valid = read_checked_jsonl(run.results_path)
    assert sorted(r["index"] for r in raw) == list(range(N_SAMPLES))
    assert valid == run.results_path.stat().st_size
    assert [comparable(r) for r in run.results()] == [comparable(r) for r in ref.results()]
    # Identical greedy completions (also implied above, said explicitly).
    assert [r["completion"] for r in run.results()] == [r["completion"] for r in ref.results()]
    # No temp file of a killed writer survives the final resume.
    leftovers = [p.name for d in (run_path, run_path / "states") for p in d.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    # The same shards, tensor-equal, with the same metadata.
    assert shard_names(run_path) == shard_names(reference) == [f"{i:06d}.safetensors" for i in range(N_SAMPLES)]
    for index in range(N_SAMPLES):
        mine, theirs = run.load_states(index), ref.load_states(index)
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert mine[key].dtype == theirs[key].dtype and torch.equal(mine[key], theirs[key]), (index, key)
        with safe_open(run.state_path(index), "pt") as a, safe_open(ref.state_path(index), "pt") as b:
            assert a.metadata() == b.metadata()
    for key in ("n", "n_correct", "accuracy", "n_failed", "total_tokens"):
        assert run.summary[key] == ref.summary[key]


def test_every_shard_matches_a_teacher_forced_recompute(tmp_path, tiny_llama):
    """The states a run stores are the ones that predicted each token, batch after batch.

    Guards the comparison above against a reference that is itself wrong: capture once recognised a new batch by
    id() of its rows list, which Python may reuse, and then stored the previous batch's states.
    """
    from reasonlens.decode import DecodeConfig
    from reasonlens.models import record_layers
    from reasonlens.runs import RunSpec, execute

    out = tmp_path / "run"
    execute(
        RunSpec(
            out=out,
            model="tiny-llama",
            dataset="gsm8k",
            n=8,
            layers="1,final",
            decode=DecodeConfig(max_new_tokens=6, batch_size=2),
        ),
        lm=tiny_llama,
        quiet=True,
    )
    run = RunDir(out)
    for record in run.results():
        states = run.load_states(record["index"])
        generated = states["token_ids"].tolist()
        ids = tiny_llama.tokenizer(record["prompt"])["input_ids"] + generated
        store: dict = {}
        with record_layers(tiny_llama.layers, [1, "final"], store, last_only=False), torch.no_grad():
            tiny_llama.model(input_ids=torch.tensor([ids]))
        start = len(ids) - len(generated) - 1  # the state at position p predicts token p + 1
        for key in (1, "final"):
            expected = store[key][0, start : len(ids) - 1]
            assert torch.allclose(states[f"layer.{key}"], expected, atol=1e-4), (record["index"], key)
