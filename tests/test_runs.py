"""Run directories: checksummed appends, atomic shards, resume without loss or duplicates."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from reasonlens.decode import DecodeConfig
from reasonlens.errors import UserError
from reasonlens.runs import RunDir, RunSpec, execute
from reasonlens.runs.io import CheckedAppender, _host_tag, _temp_prefix, encode_record, read_checked_jsonl, record_crc


def test_checked_jsonl_drops_torn_and_corrupt_tail(tmp_path):
    path = tmp_path / "r.jsonl"
    with CheckedAppender(path) as app:
        app.append([{"index": 0, "x": "a"}, {"index": 1, "x": "b"}])
    good = path.read_bytes()
    path.write_bytes(good + encode_record({"index": 2})[:-5])  # torn: no newline
    records, valid = read_checked_jsonl(path)
    assert [r["index"] for r in records] == [0, 1] and valid == len(good)
    tampered = json.loads(good.splitlines()[1])
    tampered["x"] = "changed"
    path.write_bytes(good.splitlines(keepends=True)[0] + (json.dumps(tampered) + "\n").encode())
    records, _ = read_checked_jsonl(path)
    assert [r["index"] for r in records] == [0]
    with CheckedAppender(path) as app:  # reopening truncates the bad tail before appending
        app.append([{"index": 5}])
    records, valid = read_checked_jsonl(path)
    assert [r["index"] for r in records] == [0, 5] and valid == path.stat().st_size
    assert records[1]["crc"] == record_crc(records[1])


def spec(out, **kw):
    base = dict(
        out=out,
        model="tiny-llama",
        dataset="gsm8k",
        n=5,
        layers="-1,final",
        decode=DecodeConfig(max_new_tokens=6, batch_size=2),
    )
    base.update(kw)
    return RunSpec(**base)


def test_generate_run_writes_results_shards_summary(tmp_path, tiny_llama):
    summary = execute(spec(tmp_path / "run"), lm=tiny_llama, quiet=True)
    run = RunDir(tmp_path / "run")
    results = run.results()
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert summary["n"] == 5 and summary["accuracy"] == summary["n_correct"] / summary["n"]
    assert run.manifest["layers"] == [3, "final"] and run.manifest["hidden_size"] == 64
    for r in results:
        tensors = run.load_states(r["index"])
        assert tensors["layer.3"].shape == (r["n_tokens"], 64)
        assert tensors["layer.final"].dtype == torch.float32
        assert tensors["token_ids"].shape == (r["n_tokens"],)
        assert run.state_metadata(r["index"])["id"] == r["id"]
        assert r["gold"] and r["status"] in ("ok", "ungradable")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["n"] == 5


def test_capture_from_a_model_without_a_layer_adapter_is_a_user_error(tmp_path, tiny_llama):
    from dataclasses import replace

    no_adapter = replace(tiny_llama, layers=None)
    with pytest.raises(UserError, match="--layers: .* does not support hidden-state capture"):
        execute(spec(tmp_path / "run"), lm=no_adapter, quiet=True)
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_resume_redoes_only_incomplete_samples(tmp_path, tiny_llama):
    reference = tmp_path / "ref"
    execute(spec(reference), lm=tiny_llama, quiet=True)
    expected = {r["index"]: (r["completion"], r["n_tokens"]) for r in RunDir(reference).results()}

    run_path = tmp_path / "run"
    execute(spec(run_path), lm=tiny_llama, quiet=True)
    run = RunDir(run_path)
    lines = run.results_path.read_bytes().splitlines(keepends=True)
    run.results_path.write_bytes(b"".join(lines[:2]) + lines[2][:10])  # torn third record, 4th and 5th lost
    run.state_path(1).unlink()  # a shard lost after its record: sample 1 must be redone too
    before = {i: run.state_path(i).stat().st_mtime_ns for i in (0,)}
    execute(spec(run_path), lm=tiny_llama, quiet=True)
    results = run.results()
    assert sorted(r["index"] for r in results) == [0, 1, 2, 3, 4]
    assert {r["index"]: (r["completion"], r["n_tokens"]) for r in results} == expected
    assert run.state_path(0).stat().st_mtime_ns == before[0]  # complete samples are not rewritten
    raw, valid = read_checked_jsonl(run.results_path)
    assert sorted(r["index"] for r in raw) == [0, 1, 2, 3, 4]  # no duplicate records on disk either
    assert valid == run.results_path.stat().st_size


def test_resume_with_different_settings_is_refused(tmp_path, tiny_llama):
    execute(spec(tmp_path / "run"), lm=tiny_llama, quiet=True)
    before = (tmp_path / "run" / "results.jsonl").read_bytes()
    with pytest.raises(UserError, match="template"):
        execute(spec(tmp_path / "run", template="deepseek-math"), lm=tiny_llama, quiet=True)
    assert (tmp_path / "run" / "results.jsonl").read_bytes() == before


def test_newer_format_version_is_refused(tmp_path, tiny_llama):
    execute(spec(tmp_path / "run"), lm=tiny_llama, quiet=True)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="newer"):
        RunDir(tmp_path / "run").open_run()


def test_corrupt_shard_is_a_user_error(tmp_path, tiny_llama):
    execute(spec(tmp_path / "run", n=2), lm=tiny_llama, quiet=True)
    run = RunDir(tmp_path / "run")
    run.state_path(0).write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="000000.safetensors"):
        run.load_states(0)


# A writer killed by SIGKILL between creating its temp file and renaming it (a real child process).
KILLED_WRITER = """
import os, signal, sys
from reasonlens.runs import io
print(os.getpid(), flush=True)
io.os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
io.atomic_write_bytes(sys.argv[1], b"new contents that never land")
"""


def kill_writer_of(target) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    return int(proc.stdout.split()[0])


def test_resume_removes_temp_files_of_killed_writers_and_nothing_else(tmp_path, tiny_llama):
    out = tmp_path / "run"
    execute(spec(out, n=2), lm=tiny_llama, quiet=True)
    run = RunDir(out)
    shard_before, results_before = run.state_path(0).read_bytes(), run.results_path.read_bytes()
    dead_pid = kill_writer_of(run.state_path(0))
    kill_writer_of(run.summary_path)
    stale = sorted(p for p in out.rglob("*.tmp"))
    assert [p.parent.name for p in stale] == ["run", "states"]  # one beside summary.json, one beside the shard
    assert run.state_path(0).read_bytes() == shard_before  # the old file survived the kill

    kept = {
        out / "notes.tmp": b"a user's file",
        out / ".summary.json.tmp": b"a look-alike without the writer's tag",
        out / "states" / ".000001.safetensors.abcdefgh.tmp": b"untagged (older reasonlens)",
        # the tag of a live process (this one), and of a dead pid on another host sharing the folder
        out / "states" / f"{_temp_prefix(run.state_path(1))}abcd_123.tmp": b"a live writer's file",
        out / f".manifest.json.rl{dead_pid}-{'0' * 8 if _host_tag() != '0' * 8 else '1' * 8}.abcdefgh.tmp": b"x",
    }
    for path, data in kept.items():
        path.write_bytes(data)
    execute(spec(out, n=2), lm=tiny_llama, quiet=True)  # resume: nothing left to decode
    assert not any(p.exists() for p in stale)
    assert {p: p.read_bytes() for p in kept} == kept
    assert run.state_path(0).read_bytes() == shard_before and run.results_path.read_bytes() == results_before


def test_a_checksummed_record_with_a_wrong_type_is_refused(tmp_path):
    run = RunDir(tmp_path)
    run.results_path.write_bytes(
        encode_record({"index": 0, "correct": True}) + encode_record({"index": 1, "correct": "no"})
    )
    with pytest.raises(UserError, match=r"results.jsonl: line 2: field 'correct'"):
        run.results()
    run.results_path.write_bytes(encode_record({"index": True, "correct": False}))
    with pytest.raises(UserError, match=r"line 1: field 'index'"):
        run.results()


@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_run_files_follow_the_umask_not_mkstemp(tmp_path, tiny_llama, umask, file_mode, dir_mode):
    """A shared cluster: colleagues must read runs (mkstemp would make every file 0600)."""
    import stat

    from reasonlens.analysis.pipeline import MIConfig, OutputConfig, analyze_run
    from reasonlens.analysis.stages import PopulationConfig
    from reasonlens.decode import DecodeConfig
    from reasonlens.runs import RunSpec, execute

    old = os.umask(umask)
    try:
        execute(
            RunSpec(
                out=tmp_path / "run",
                model="tiny-llama",
                dataset="gsm8k",
                n=2,
                layers="-1",
                decode=DecodeConfig(max_new_tokens=2),
            ),
            lm=tiny_llama,
            quiet=True,
        )
        analyze_run(
            tmp_path / "run",
            MIConfig(n_boot=20, population=PopulationConfig(enabled=False), output=OutputConfig(plots=False)),
            quiet=True,
        )
    finally:
        os.umask(old)
    paths = [tmp_path / "run", *(tmp_path / "run").rglob("*")]
    files = [p for p in paths if p.is_file() and not p.name.endswith(".lock")]
    assert {p.name for p in files} >= {
        "manifest.json",
        "results.jsonl",
        "summary.json",
        "000000.safetensors",
        "golds.safetensors",
        "mi.parquet",
    }
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(file_mode)}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in paths if p.is_dir()} == {oct(dir_mode)}


def test_manifest_records_provenance(tmp_path, tiny_llama):
    import datetime
    import re

    import transformers

    import reasonlens

    execute(
        RunSpec(out=tmp_path / "run", model="tiny-llama", dataset="gsm8k", n=1, decode=DecodeConfig(max_new_tokens=2)),
        lm=tiny_llama,
        quiet=True,
    )
    provenance = RunDir(tmp_path / "run").manifest["provenance"]
    stamp = datetime.datetime.fromisoformat(provenance["created_utc"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - stamp).total_seconds()) < 600
    versions = provenance["versions"]
    assert (versions["reasonlens"], versions["torch"], versions["transformers"]) == (
        reasonlens.__version__,
        torch.__version__,
        transformers.__version__,
    )
    assert re.fullmatch(r"[0-9a-f]{64}", provenance["model"]["weights"]["sha256"])
    if "git" in provenance:  # running from a checkout
        assert re.fullmatch(r"[0-9a-f]{40}", provenance["git"]["commit"])


def test_weights_fingerprint_is_cheap_and_changes_with_the_weights(tmp_path, monkeypatch):
    from reasonlens.models import load

    monkeypatch.setenv("REASONLENS_CACHE", str(tmp_path / "cache"))
    from reasonlens.runs.provenance import model_provenance, weights_fingerprint

    lm = load("organism-cot")
    first = model_provenance(lm)["weights"]
    assert first["files"] == ["model.safetensors"] and first["bytes"] > 1_000_000
    assert set(first["file_sha256"]) == {"model.safetensors"}
    copy = tmp_path / "m"
    lm.model.save_pretrained(copy)
    same = weights_fingerprint(copy)
    assert weights_fingerprint(copy) == same  # second call: the cached full hash
    with torch.no_grad():
        next(lm.model.parameters()).view(-1)[0] += 1.0
    lm.model.save_pretrained(tmp_path / "changed")
    changed = weights_fingerprint(tmp_path / "changed")
    assert changed["sha256"] == same["sha256"]  # same tensor table: the cheap header digest cannot see values...
    assert changed["file_sha256"] != same["file_sha256"]  # ...the full sha256 does
    lm.model.to(torch.float16).save_pretrained(tmp_path / "m16")
    assert weights_fingerprint(tmp_path / "m16")["sha256"] != same["sha256"]


def test_revision_only_for_hub_ids():
    from reasonlens.models import load

    with pytest.raises(UserError, match="--revision main: 'organism-cot' is a local model"):
        load("organism-cot", revision="main")


def test_sampled_run_is_deterministic_with_a_seed_and_reports_pass_at_k(tmp_path, tiny_llama):
    decode = DecodeConfig(max_new_tokens=4, do_sample=True, temperature=0.8, top_p=0.95, seed=7, batch_size=3)

    def texts(out, **changes):
        spec = RunSpec(
            out=out,
            model="tiny-llama",
            dataset="gsm8k",
            n=2,
            samples=3,
            layers="embed",
            decode=DecodeConfig(**{**decode.__dict__, **changes}),
        )
        summary = execute(spec, lm=tiny_llama, quiet=True)
        return [r["completion"] for r in RunDir(out).results()], summary

    first, summary = texts(tmp_path / "a")
    again, _ = texts(tmp_path / "b")
    batched_differently, _ = texts(tmp_path / "c", batch_size=2)
    other_seed, _ = texts(tmp_path / "d", seed=8)
    assert first == again == batched_differently and first != other_seed
    assert len(set(first[:3])) > 1  # three samples of one problem differ
    records = RunDir(tmp_path / "a").results()
    assert [(r["problem_id"], r["sample"]) for r in records[:3]] == [(records[0]["problem_id"], j) for j in range(3)]
    assert summary["samples_per_problem"] == 3 and summary["n_problems"] == 2
    assert set(summary["pass_at_k"]) == {"1", "2", "3"} and summary["accuracy_ci_method"] == "bootstrap over problems"
    assert RunDir(tmp_path / "a").load_states(0)["layer.embed"].shape[1] == tiny_llama.hidden_size


def test_samples_need_sampling(tmp_path):
    with pytest.raises(UserError, match="--samples 4 needs sampling"):
        RunSpec(out=tmp_path / "x", model="tiny-llama", dataset="gsm8k", samples=4).validate()
