"""End to end on a tiny real model: generate -> mi -> tokens -> compare, checked against direct computation."""

import json
from dataclasses import replace

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from reasonlens.analysis.peaks import PeakConfig, find_peaks
from reasonlens.analysis.pipeline import GoldConfig, MIConfig, OutputConfig, analyze_run
from reasonlens.analysis.stages import PopulationConfig
from reasonlens.analysis.tokens import read_token_set
from reasonlens.cli import app
from reasonlens.data import load_problems
from reasonlens.decode import DecodeConfig
from reasonlens.errors import UserError
from reasonlens.mi import paper_hsic
from reasonlens.models import encode_gold, load
from reasonlens.runs import RunDir, RunSpec, execute


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    execute(
        RunSpec(
            out=out,
            model="tiny-llama",
            dataset="gsm8k",
            n=4,
            layers="-1,final",
            decode=DecodeConfig(max_new_tokens=24, batch_size=4),
        ),
        quiet=True,
    )
    return out


FAST = MIConfig(n_boot=200, population=PopulationConfig(n_permutations=9, n_bins=2), output=OutputConfig(plot_traces=2))


def test_mi_outputs_match_direct_computation(run_dir):
    summary = analyze_run(run_dir, FAST, quiet=True)
    out = run_dir / "mi"
    assert json.loads((out / "summary.json").read_text())["n"] == 4
    for name in (
        "mi.parquet",
        "stats.parquet",
        "peaks.parquet",
        "population.parquet",
        "tokens.jsonl",
        "trajectories.png",
        "peak_tokens.png",
        "cumulative_vs_correct.png",
        "golds.safetensors",
    ):
        assert (out / name).is_file(), name
    assert summary["layers"] == ["3", "final"] and summary["token_layer"] == "3"

    run = RunDir(run_dir)
    lm = load("tiny-llama")
    problem = load_problems("gsm8k", n=4)[1]
    gold = encode_gold(lm, problem.solution, [3])[3]
    states = run.load_states(1)
    expected = paper_hsic(states["layer.3"], gold)
    mi = pq.read_table(out / "mi.parquet").to_pylist()
    got = [r for r in mi if r["index"] == 1 and r["layer"] == "3"]
    assert [r["step"] for r in got] == list(range(states["token_ids"].shape[0]))
    assert [r["token_id"] for r in got] == states["token_ids"].tolist()
    torch.testing.assert_close(torch.tensor([r["mi"] for r in got], dtype=torch.float64), expected, rtol=1e-9, atol=0)
    assert [r["step"] for r in got if r["is_peak"]] == find_peaks(expected.numpy(), PeakConfig()).tolist()

    stats = [r for r in pq.read_table(out / "stats.parquet").to_pylist() if r["index"] == 1 and r["layer"] == "3"]
    assert stats[0]["cumulative"] == pytest.approx(float(expected.sum()))


def test_greedy_peaks_read_the_same_token_through_the_lm_head(run_dir):
    analyze_run(run_dir, FAST, quiet=True)
    peaks = pq.read_table(run_dir / "mi" / "peaks.parquet").to_pylist()
    assert peaks, "a tiny random model still has IQR outliers in 4 traces"
    # greedy decoding: the argmax of the (final-normed) state is the emitted token, at the last layer and "final"
    assert all(p["agree"] for p in peaks)
    summary = json.loads((run_dir / "mi" / "summary.json").read_text())
    assert summary["per_layer"]["3"]["argmax_agreement"] == 1.0


def test_gold_cache_is_reused(run_dir):
    quick = MIConfig(n_boot=50, population=PopulationConfig(enabled=False), output=OutputConfig(plots=False))
    analyze_run(run_dir, quick, quiet=True)
    golds = run_dir / "mi" / "golds.safetensors"
    before = golds.stat().st_mtime_ns
    analyze_run(run_dir, quick, quiet=True)
    assert golds.stat().st_mtime_ns == before
    analyze_run(run_dir, replace(quick, gold=GoldConfig(source="answer")), quiet=True)
    assert golds.stat().st_mtime_ns != before  # another gold text: re-encoded


def test_cli_mi_tokens_compare(run_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "mi",
            str(run_dir),
            "--n-boot",
            "100",
            "--permutations",
            "0",
            "--align",
            "step",
            "--stride",
            "8",
            "--peaks",
            "topk",
            "--num-peaks",
            "3",
            "--no-plots",
        ],
    )
    assert res.exit_code == 0, res.output
    population = pq.read_table(run_dir / "mi" / "population.parquet").to_pylist()
    assert {r["bin"] for r in population} <= {0, 8, 16} and {r["align"] for r in population} == {"step"}
    rows = pq.read_table(run_dir / "mi" / "stats.parquet").to_pylist()
    assert all(r["n_peaks"] == 3 for r in rows)  # top-k mode, every trace has >= 3 steps

    token_file = tmp_path / "thinking.jsonl"
    res = runner.invoke(app, ["tokens", str(run_dir), "--out", str(token_file), "--all-tokens"])
    assert res.exit_code == 0, res.output
    words = read_token_set(token_file)
    peaks = [r for r in pq.read_table(run_dir / "mi" / "peaks.parquet").to_pylist() if r["layer"] == "3"]
    assert sum(w.frequency for w in words) <= len(peaks) and words
    assert all(w.frequency >= 1 and w.token_ids for w in words)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for line in token_file.read_text().splitlines():  # provenance travels inside the file
        source = json.loads(line)["source"]
        assert (source["dataset"], source["split"], source["layer"]) == (manifest["dataset"], manifest["split"], "3")

    res = runner.invoke(
        app,
        [
            "compare",
            str(run_dir),
            str(run_dir),
            "--out",
            str(tmp_path / "cmp"),
            "--layer-b",
            "final",
            "--n-boot",
            "100",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert summary["n_shared"] == 4 and summary["layer_a"] == "3" and summary["layer_b"] == "final"
    assert (tmp_path / "cmp" / "compare.png").is_file()

    res = runner.invoke(app, ["mi", str(run_dir), "--layers", "0"])
    assert isinstance(res.exception, UserError) and "was not captured" in str(res.exception)


def test_compare_runs_checks_both_runs_before_writing_anything(run_dir, tmp_path):
    import shutil

    from reasonlens.analysis.compare import compare_runs

    fresh = tmp_path / "a"
    shutil.copytree(run_dir, fresh)
    shutil.rmtree(fresh / "mi", ignore_errors=True)
    newer = tmp_path / "b"
    newer.mkdir()
    (newer / "manifest.json").write_text(json.dumps({"format_version": 99}))
    before = sorted(p.name for p in fresh.iterdir())
    with pytest.raises(UserError, match="format version"):
        compare_runs(fresh, newer)  # the library call, not only the CLI, validates B before analysing A
    assert sorted(p.name for p in fresh.iterdir()) == before and not (fresh / "mi").exists()
