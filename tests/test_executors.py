"""Sharded run layout without Ray: chunk shares, per-worker result files, the merge, resume after a cut-off."""

import pytest

from reasonlens.decode import DecodeConfig
from reasonlens.errors import UserError
from reasonlens.runs import RunDir, RunSpec, execute
from reasonlens.runs.executors import (
    LocalExecutor,
    make_executor,
    pending_chunks,
    shard_chunks,
)
from reasonlens.runs.io import CheckedAppender, read_checked_jsonl
from reasonlens.runs.runner import chunk_indices


def spec(out, **kw):
    base = dict(
        out=out,
        model="tiny-llama",
        dataset="gsm8k",
        n=5,
        layers="-1",
        decode=DecodeConfig(max_new_tokens=5, batch_size=2, window=1),
    )  # chunks of one batch
    base.update(kw)
    return RunSpec(**base)


def comparable(run):
    return [{k: v for k, v in r.items() if k not in ("seconds", "crc")} for r in RunDir(run).results()]


def test_shards_are_deterministic_round_robin_and_cover_every_chunk():
    assert chunk_indices(5, 2) == [[0, 1], [2, 3], [4]]
    assert shard_chunks([0, 1, 2, 3, 4], 2) == [[0, 2, 4], [1, 3]]
    assert shard_chunks([1, 4], 3) == [[1], [4], []]
    shares = shard_chunks(list(range(11)), 4)
    assert sorted(c for s in shares for c in s) == list(range(11))
    with pytest.raises(UserError, match="--workers"):
        shard_chunks([0], 0)


def test_merge_prefers_worker_records_and_is_idempotent(tmp_path):
    run = RunDir(tmp_path)
    with CheckedAppender(run.results_path) as app:
        app.append([{"index": 0, "v": "old"}, {"index": 3, "v": "kept"}])
    with CheckedAppender(run.worker_results_path(1)) as app:
        app.append([{"index": 2, "v": "w1"}])
    with CheckedAppender(run.worker_results_path(0)) as app:
        app.append([{"index": 0, "v": "redone"}, {"index": 1, "v": "w0"}])
    (tmp_path / "results.wx.jsonl").write_text("not a worker file\n")
    assert [p.name for p in run.worker_result_files()] == ["results.w0.jsonl", "results.w1.jsonl"]
    assert run.merge_worker_results() == 3
    assert [(r["index"], r["v"]) for r in run.results()] == [(0, "redone"), (1, "w0"), (2, "w1"), (3, "kept")]
    raw, valid = read_checked_jsonl(run.results_path)
    assert [r["index"] for r in raw] == [0, 1, 2, 3] and valid == run.results_path.stat().st_size
    assert run.worker_result_files() == [] and (tmp_path / "results.wx.jsonl").exists()
    before = run.results_path.read_bytes()
    assert run.merge_worker_results() == 0 and run.results_path.read_bytes() == before


def test_worker_shards_into_one_layout_equal_the_single_process_run(tmp_path, tiny_llama):
    execute(spec(tmp_path / "single"), lm=tiny_llama, quiet=True)
    out = tmp_path / "sharded"
    for worker, share in enumerate(shard_chunks([0, 1, 2], 2)):  # what two Ray workers do, one after the other
        result = execute(spec(out), lm=tiny_llama, quiet=True, chunks=share, worker=worker)
        assert result == {"worker": worker, "n_written": sum(len(chunk_indices(5, 2)[c]) for c in share)}
    run = RunDir(out)
    assert not run.results_path.exists() or run.results() == []  # workers never write results.jsonl
    assert [p.name for p in run.worker_result_files()] == ["results.w0.jsonl", "results.w1.jsonl"]
    run.merge_worker_results()
    assert comparable(out) == comparable(tmp_path / "single")
    for r in run.results():
        assert (
            run.load_states(r["index"])["token_ids"].tolist()
            == RunDir(tmp_path / "single").load_states(r["index"])["token_ids"].tolist()
        )


def test_cut_off_sharded_run_resumes_locally_and_reports_pending_chunks(tmp_path, tiny_llama):
    out = tmp_path / "run"
    execute(spec(out), lm=tiny_llama, quiet=True, chunks=[0, 2], worker=0)  # worker 1 never ran
    run = RunDir(out)
    assert pending_chunks(run, 5, 2) == [1]  # merges the worker file first
    assert run.worker_result_files() == [] and [r["index"] for r in run.results()] == [0, 1, 4]
    run.state_path(4).unlink()  # a shard lost after its record: chunk 2 is pending again
    assert pending_chunks(run, 5, 2) == [1, 2]
    with CheckedAppender(run.worker_results_path(3)) as app:  # a leftover worker file from a crashed run
        app.append([r for r in run.results() if r["index"] == 0])
    summary = LocalExecutor().run(spec(out), lm=tiny_llama, quiet=True)
    assert summary["n"] == 5 and run.worker_result_files() == []
    raw, _ = read_checked_jsonl(run.results_path)
    assert sorted(r["index"] for r in raw) == [0, 1, 2, 3, 4]  # no duplicates on disk


def test_make_executor_validates_options():
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(UserError, match="--executor must be one of local, ray"):
        make_executor("dask")
    with pytest.raises(UserError, match="--ray-address needs --executor ray"):
        make_executor("local", address="auto")
    with pytest.raises(UserError, match="--workers needs --executor ray"):
        make_executor("local", workers=4)
