"""The bad-input corpus (tests/bad_inputs/): every case fails cleanly through the real CLI.

Each case is a directory `tests/bad_inputs/<name>/` with `case.json` and the files it needs:

    {"args": [...command line...], "expect": [substrings of the error line], "run": {...}, "run2": {...},
     "generate": "<name of a file generator below>", "xfail": "<reason>"}

Placeholders in args: `{case}` (a scratch copy of the case directory), `{run}` / `{run2}` (copies of a real
captured run directory, edited as `run` / `run2` say: `manifest` fields merged, `delete`, `truncate` to a
byte count, `write` text, `shrink_states` to a narrower hidden size), `{scratch}` (an empty folder) and
`{out}` (a path that does not exist). Every case must exit with code 2 and print exactly one stderr line,
`error: ...`, containing every `expect` substring, with no traceback; the case's files and run directories
are byte-identical afterwards and `{out}` is not created.

All cases run in one helper interpreter (tests/bad_inputs/cli_batch.py, calling `reasonlens.cli.main(argv)`
with file descriptors 1 and 2 captured); a few also run through `python -m reasonlens.cli` to check the
installed entry point prints and exits the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
CASES = sorted(p.parent.name for p in CORPUS.glob("*/case.json"))
ENTRY_POINT_CASES = ("jsonl_non_utf8", "mi_newer_format_version", "eval_unknown_method")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
HUGE_LINE_BYTES = 100 * 1024 * 1024


def load_case(name: str) -> dict:
    return json.loads((CORPUS / name / "case.json").read_text(encoding="utf-8"))


def tree_hash(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (and '<dir>' for every folder) under root."""
    if not root.exists():
        return {}
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            out[rel] = "<dir>"
        else:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            out[rel] = digest.hexdigest()
    return out


# -- file generators for cases whose inputs are too big or too binary to commit -------------------------------
def huge_line(case_dir: Path, scratch: Path) -> None:
    """A dataset whose first line is a 100 MB JSON object (written at test time, never committed)."""
    with open(scratch / "huge.jsonl", "wb") as handle:
        handle.write(b'{"id": "huge", "answer": "1", "question": "')
        chunk = b"What is one plus one? " * 4096
        written = 0
        while written < HUGE_LINE_BYTES:
            handle.write(chunk)
            written += len(chunk)
        handle.write(b'"}\n')


def corrupt_model(case_dir: Path, scratch: Path) -> None:
    """A real tiny Llama model directory whose weights file is cut short."""
    from reasonlens.models.tiny import tiny_llama

    lm = tiny_llama(layers=1, hidden=32)
    model_dir = case_dir / "model"
    lm.model.save_pretrained(model_dir)
    lm.tokenizer.save_pretrained(model_dir)
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])


def remote_code_model(case_dir: Path, scratch: Path) -> None:
    """A model directory that would need its own Python code (auto_map) to load."""
    model_dir = case_dir / "model"
    model_dir.mkdir()
    code = f"from pathlib import Path\nPath({str(scratch / 'remote_code_ran')!r}).write_text('ran')\n"
    (model_dir / "configuration_custom.py").write_text(code)
    (model_dir / "modeling_custom.py").write_text(code)
    (model_dir / "config.json").write_text(json.dumps({
        "model_type": "custom-lm", "architectures": ["CustomForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                     "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}}))


GENERATORS = {"huge_line": huge_line, "corrupt_model": corrupt_model, "remote_code_model": remote_code_model}


# -- run directories ---------------------------------------------------------------------------------------------
def edit_run(run: Path, edits: dict) -> None:
    if "shrink_states" in edits:
        width = edits["shrink_states"]
        for shard in sorted((run / "states").glob("*.safetensors")):
            from safetensors import safe_open

            with safe_open(shard, "pt") as handle:
                metadata = handle.metadata()
            tensors = {k: (v[:, :width].contiguous() if k.startswith("layer.") else v)
                       for k, v in load_file(shard).items()}
            save_file(tensors, shard, metadata=metadata)
    if "manifest" in edits:
        manifest = json.loads((run / "manifest.json").read_text())
        manifest.update(edits["manifest"])
        (run / "manifest.json").write_text(json.dumps(manifest, indent=2))
    for rel in edits.get("delete", []):
        target = run / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    for rel, size in edits.get("truncate", {}).items():
        target = run / rel
        target.write_bytes(target.read_bytes()[:size])
    for rel, text in edits.get("write", {}).items():
        (run / rel).write_text(text)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, tiny_llama):
    """A real captured run (tiny Llama, 3 GSM8K problems, layers 1 and final) to copy and damage."""
    from reasonlens.decode import DecodeConfig
    from reasonlens.runs import RunSpec, execute

    out = tmp_path_factory.mktemp("base") / "run"
    execute(RunSpec(out=out, model="tiny-llama", dataset="gsm8k", n=3, layers="1,final",
                    decode=DecodeConfig(max_new_tokens=6, batch_size=2)), lm=tiny_llama, quiet=True)
    return out


def materialize(name: str, root: Path, base_run: Path) -> tuple[list[str], dict[str, Path]]:
    """Scratch copies of the case's files and runs; returns the argv and the folders to hash."""
    spec = load_case(name)
    case_dir, scratch = root / "case", root / "scratch"
    shutil.copytree(CORPUS / name, case_dir)
    scratch.mkdir()
    places = {"case": case_dir, "scratch": scratch, "out": scratch / "out"}
    for key in ("run", "run2"):
        if key in spec:
            shutil.copytree(base_run, root / key)
            edit_run(root / key, spec[key])
            places[key] = root / key
    if "generate" in spec:
        GENERATORS[spec["generate"]](case_dir, scratch)
    argv = [arg.format(**{k: str(v) for k, v in places.items()}) for arg in spec["args"]]
    return argv, places


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, base_run):
    """Run every case in one helper interpreter; per case: result, hashes before/after, its folders."""
    root = tmp_path_factory.mktemp("bad_inputs")
    jobs, prepared = [], {}
    for name in CASES:
        argv, places = materialize(name, root / name, base_run)
        hashed = {k: places[k] for k in ("case", "run", "run2", "scratch") if k in places}
        prepared[name] = {"places": places, "before": {k: tree_hash(p) for k, p in hashed.items()}, "argv": argv}
        jobs.append({"name": name, "argv": argv})
    results: dict = {}
    while len(results) < len(jobs):
        # A case that kills the helper (memory, a native crash) is recorded, and the helper restarts after it.
        pending = [job for job in jobs if job["name"] not in results]
        (root / "jobs.json").write_text(json.dumps(pending))
        (root / "results.json").unlink(missing_ok=True)
        proc = subprocess.run([sys.executable, str(CORPUS / "cli_batch.py"), str(root / "jobs.json"),
                               str(root / "results.json")], env=ENV, capture_output=True, text=True, timeout=1800)
        if (root / "results.json").exists():
            results.update(json.loads((root / "results.json").read_text()))
        if proc.returncode != 0 and len(results) < len(jobs):
            crashed = next(job["name"] for job in jobs if job["name"] not in results)
            results[crashed] = {"code": None, "timed_out": False, "stderr": proc.stderr[-3000:],
                                "exception": f"the helper process died (exit status {proc.returncode})"}
    for name, info in prepared.items():
        info["result"] = results[name]
        info["after"] = {k: tree_hash(info["places"][k]) for k in info["before"]}
    return prepared


def check_failure(name: str, code, stderr: str, info: dict) -> None:
    spec = load_case(name)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert code == 2, f"exit code {code}; stderr: {stderr[-2000:]}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {lines[:5]}"
    assert lines[0].startswith("error: "), lines[0]
    for needle in spec["expect"]:
        assert needle.format(**{k: str(v) for k, v in info["places"].items()}) in lines[0], (needle, lines[0])
    assert info["after"] == info["before"], "the case's files or run directories changed"
    assert not info["places"]["out"].exists(), "a failing command created its output"


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
    for name in CASES:
        spec = load_case(name)
        assert spec["args"] and spec["expect"], name


@pytest.mark.parametrize("name", CASES)
def test_bad_input_fails_cleanly(name, outcomes):
    spec = load_case(name)
    if "xfail" in spec:
        pytest.xfail(spec["xfail"])
    info = outcomes[name]
    result = info["result"]
    assert not result["timed_out"], "the command hung"
    assert result["exception"] is None, f"main() raised instead of exiting:\n{result['exception'][-3000:]}"
    check_failure(name, result["code"], result["stderr"], info)
    if name == "model_remote_code_needs_flag":
        assert not (info["places"]["scratch"] / "remote_code_ran").exists()


@pytest.mark.parametrize("name", ENTRY_POINT_CASES)
def test_entry_point_prints_one_line_and_exits_2(name, tmp_path, base_run):
    argv, places = materialize(name, tmp_path, base_run)
    hashed = {k: places[k] for k in ("case", "run", "run2", "scratch") if k in places}
    before = {k: tree_hash(p) for k, p in hashed.items()}
    proc = subprocess.run([sys.executable, "-m", "reasonlens.cli", *argv], env=ENV, capture_output=True, text=True,
                          timeout=600)
    info = {"places": places, "before": before, "after": {k: tree_hash(p) for k, p in hashed.items()}}
    check_failure(name, proc.returncode, proc.stderr, info)
