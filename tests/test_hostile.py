"""The hostile corpus (tests/hostile/): run folders, model folders and inputs from someone else, signals, full
disks and memory limits. Every case goes through the real CLI and must meet the contract of the shared harness
(tests/corpus.py): its exit code, one stderr line naming the place, no traceback, and nothing outside what the
case lets change (`changes`) touched, `{out}` included.

Most cases run together in one helper interpreter (import cost paid once); cases that need a real signal, a
`ulimit`, their own environment or a second process holding the run lock run as their own
`python -m reasonlens.cli` process ("process" in case.json); the slow ones are marked `slow`.
"""

from __future__ import annotations

import os

import pytest
from corpus import (
    TESTS,
    case_names,
    check_failure,
    load_case,
    make_base_run,
    prepare,
    run_batch,
    run_process,
    unmount_all,
)

CORPUS = TESTS / "hostile"
CASES = case_names(CORPUS)
SPECS = {name: load_case(CORPUS, name) for name in CASES}
BATCH = [n for n in CASES if "process" not in SPECS[n]]
PROCESS = [
    pytest.param(n, marks=[pytest.mark.slow] if SPECS[n].get("slow") else [], id=n)
    for n in CASES
    if "process" in SPECS[n]
]


@pytest.fixture(scope="module")
def base_runs(tmp_path_factory, tiny_llama):
    """Real captured runs to copy and damage: a plain one and one analysed by `reasonlens mi` (RUN/mi)."""
    root = tmp_path_factory.mktemp("hostile_base")
    plain = make_base_run(root / "plain", tiny_llama)
    analysed = make_base_run(root / "analysed", tiny_llama, analysed=True)
    for run in (plain, analysed):
        (run / ".lock").unlink(missing_ok=True)  # copies start unlocked and without a stale lock file
    return {"plain": plain, "analysed": analysed}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, base_runs):
    root = tmp_path_factory.mktemp("hostile")
    prepared = prepare(CORPUS, BATCH, root, base_runs)
    run_batch(prepared, root)
    return prepared


def test_corpus_is_large_enough():
    assert len(CASES) >= 80
    for name in CASES:
        assert SPECS[name]["args"] and "expect" in SPECS[name], name


@pytest.mark.parametrize("name", BATCH)
def test_hostile_input_in_batch(name, outcomes):
    if "xfail" in SPECS[name]:
        pytest.xfail(SPECS[name]["xfail"])
    check_failure(outcomes[name])


@pytest.mark.parametrize("name", PROCESS)
def test_hostile_input_in_own_process(name, tmp_path, base_runs):
    spec = SPECS[name]
    if spec.get("skip_root") and os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    if "xfail" in spec:
        pytest.xfail(spec["xfail"])
    info = prepare(CORPUS, [name], tmp_path, base_runs)[name]
    try:
        run_process(info)
        check_failure(info)
    finally:
        unmount_all()
