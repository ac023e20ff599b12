"""The bad-input corpus (tests/bad_inputs/): every case fails cleanly through the real CLI.

Each case is a directory `tests/bad_inputs/<name>/` with `case.json` and the files it needs; the format, the
placeholders and the contract (exit code 2, exactly one `error: ...` stderr line holding every `expect`
substring, no traceback, the case's files and run directories byte-identical afterwards, `{out}` not created)
are those of the shared harness, tests/corpus.py (also used by the hostile corpus, tests/test_hostile.py).

All cases run in one helper interpreter (tests/bad_inputs/cli_batch.py, calling `reasonlens.cli.main(argv)`
with file descriptors 1 and 2 captured); a few also run through `python -m reasonlens.cli` to check the
installed entry point prints and exits the same way.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from corpus import (
    ENV,
    HASHED,
    TESTS,
    case_names,
    check_failure,
    load_case,
    make_base_run,
    materialize,
    prepare,
    run_batch,
    tree_hash,
)

CORPUS = TESTS / "bad_inputs"
CASES = case_names(CORPUS)
ENTRY_POINT_CASES = ("jsonl_non_utf8", "mi_newer_format_version", "eval_unknown_method")


@pytest.fixture(scope="module")
def base_runs(tmp_path_factory, tiny_llama):
    """A real captured run (tiny Llama, 3 GSM8K problems, layers 1 and final) to copy and damage."""
    return {"plain": make_base_run(tmp_path_factory.mktemp("base") / "run", tiny_llama)}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, base_runs):
    """Run every case in one helper interpreter; per case: result, hashes before/after, its folders."""
    root = tmp_path_factory.mktemp("bad_inputs")
    prepared = prepare(CORPUS, CASES, root, base_runs)
    run_batch(prepared, root)
    return prepared


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
    for name in CASES:
        spec = load_case(CORPUS, name)
        assert spec["args"] and spec["expect"], name


@pytest.mark.parametrize("name", CASES)
def test_bad_input_fails_cleanly(name, outcomes):
    spec = load_case(CORPUS, name)
    if "xfail" in spec:
        pytest.xfail(spec["xfail"])
    check_failure(outcomes[name])


@pytest.mark.parametrize("name", ENTRY_POINT_CASES)
def test_entry_point_prints_one_line_and_exits_2(name, tmp_path, base_runs):
    argv, places = materialize(CORPUS, name, tmp_path, base_runs)
    hashed = {k: places[k] for k in HASHED if k in places}
    before = {k: tree_hash(p) for k, p in hashed.items()}
    proc = subprocess.run(
        [sys.executable, "-m", "reasonlens.cli", *argv], env=ENV, capture_output=True, text=True, timeout=600
    )
    info = {
        "places": places,
        "before": before,
        "after": {k: tree_hash(p) for k, p in hashed.items()},
        "spec": load_case(CORPUS, name),
        "result": {
            "code": proc.returncode,
            "stderr": proc.stderr,
            "stdout": proc.stdout,
            "exception": None,
            "timed_out": False,
        },
    }
    check_failure(info)
