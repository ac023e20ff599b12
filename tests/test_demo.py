"""`reasonlens demo` on a tiny real model: every stage runs or says why it is skipped, the report is written,
a failing stage is reported without stopping the demo, and a second run resumes instead of redoing work."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

import reasonlens.demo as demo
from reasonlens.cli import main
from reasonlens.demo import DemoConfig, organism_available, run_demo
from reasonlens.errors import UserError


def tiny_config(out: Path) -> DemoConfig:
    return DemoConfig(
        out=out,
        quick=True,
        model="tiny-llama",
        template="raw",
        layers="-1",
        token_layer=None,
        n_traces=2,
        n_eval=2,
        max_new_tokens=10,
        batch_size=2,
        suppress_k=3,
        budgets=(5, 10),
        n_organism=2,
        organism_tokens=8,
        depth_steps=(1, 2),
        n_depth=2,
        depth_tokens=3,
        n_latent=1,
        n_boot=50,
        n_permutations=5,
        n_control_train=6,
        n_control_eval=4,
        control_k=2,
        control_seeds=(0,),
        control_tokens=60,
        control_budget=60,
        control_batch_size=6,
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    config = tiny_config(tmp_path_factory.mktemp("demo") / "out")
    return config, run_demo(config)


@pytest.mark.slow
def test_every_stage_runs_or_says_why_not(finished):
    config, results = finished
    assert [r.name for r in results] == [name for name, _, _ in demo.STAGES]
    by_name = {r.name: r for r in results}
    for name in ("traces", "mi", "suppress", "rr", "ttts", "report"):
        assert by_name[name].status == "done", (name, by_name[name].note)
    depth = by_name["depth"]
    if organism_available("organism-recurrent"):
        assert depth.status == "done"
        assert any(line.startswith("organism-recurrent: depth r=1 -> r=2 ") for line in depth.findings)
    else:
        assert depth.status == "skipped" and "organism-recurrent is not shipped" in depth.note
    controls = by_name["controls"]
    if organism_available("organism-reasoner") and organism_available("organism-reasoner-noreflect"):
        assert controls.status == "done", controls.note
        suppression = [line for line in controls.findings if "thinking suppression" in line]
        assert len(suppression) == 1
        assert re.search(
            r"thinking suppression [+-]\d\.\d\d \[[+-]\d\.\d\d,[+-]\d\.\d\d\] vs random "
            r"[+-]\d\.\d\d \[[+-]\d\.\d\d,[+-]\d\.\d\d\]",
            suppression[0],
        ), suppression[0]
        manifest = json.loads((config.out / "controls" / "suppress-thinking-k2" / "manifest.json").read_text())
        assert manifest["split"] == "test"
        assert "train" in json.dumps(manifest)  # the words were learnt on the train split
    else:
        assert controls.status == "skipped" and "not shipped" in controls.note
    log = json.loads((config.out / "demo.json").read_text())
    assert [s["status"] for s in log["stages"]] == [r.status for r in results]
    # the random control needs enough distinct words in the traces; when it cannot run, the demo says why
    random_ran = (config.out / "eval" / "suppress-random" / "summary.json").is_file()
    assert ("random control" in by_name["suppress"].note) and (
        random_ran or any(p.startswith("suppress-random (") for p in log["skipped_parts"])
    )


@pytest.mark.slow
def test_outputs_are_real_runs_and_in_the_report(finished):
    config, _ = finished
    out = config.out
    assert (out / "traces-smollm2" / "mi" / "mi.parquet").is_file()
    for name in ("baseline", "suppress-thinking", "rr", "budget-baseline", "ttts"):
        assert (out / "eval" / name / "summary.json").is_file(), name
    traces = json.loads((out / "traces-smollm2" / "manifest.json").read_text())
    assert traces["split"] == "train" and traces["dataset"] == config.dataset == "word-arith:1,2"
    manifest = json.loads((out / "eval" / "suppress-thinking" / "manifest.json").read_text())
    assert manifest["method"]["control"] == "thinking" and manifest["split"] == "test"
    source = manifest["token_set"]  # learnt on the demo's train traces, or the paper's list if they hold no word
    assert source["source_kind"] == "paper" or (
        source["source_split"] == "train" and source["source_manifest"] == str(out / "traces-smollm2" / "manifest.json")
    ), source
    ttts = json.loads((out / "eval" / "ttts" / "summary.json").read_text())
    assert sorted(ttts["accuracy_by_budget"], key=int) == ["5", "10"]
    html = (out / "report.html").read_text()
    if organism_available("organism-recurrent"):
        assert html.index('<section id="findings">') < html.index('<section id="summary">')
    for anchor in ("summary", "traces", "thinking", "interventions"):
        assert f'<section id="{anchor}">' in html


@pytest.mark.slow
def test_rerun_resumes_without_redoing_runs(finished):
    config, _ = finished
    results_file = config.out / "eval" / "rr" / "results.jsonl"
    before = results_file.stat().st_mtime_ns, (config.out / "traces-smollm2" / "mi" / "mi.parquet").stat().st_mtime_ns
    results = run_demo(config, only=["rr"])
    assert [r.name for r in results] == ["rr", "report"] and all(r.status == "done" for r in results)
    after = results_file.stat().st_mtime_ns, (config.out / "traces-smollm2" / "mi" / "mi.parquet").stat().st_mtime_ns
    assert after == before


@pytest.mark.slow
def test_a_failing_stage_is_reported_and_the_report_still_built(finished, monkeypatch, tmp_path):
    config, _ = finished

    def broken(state):
        raise RuntimeError("boom")

    stages = tuple((n, t, broken if n == "rr" else f) for n, t, f in demo.STAGES)
    monkeypatch.setattr(demo, "STAGES", stages)
    results = run_demo(config, only=["rr"])
    assert [(r.name, r.status) for r in results] == [("rr", "failed"), ("report", "done")]
    assert "RuntimeError: boom" in results[0].note


def test_unknown_stage_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--stage 'nope'"):
        run_demo(replace(tiny_config(tmp_path / "x")), only=["nope"])


def test_cli_rejects_unknown_stage(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--quick", "--out", str(tmp_path / "d"), "--stage", "nope"])
    assert exc.value.code == 2 and "--stage 'nope'" in capsys.readouterr().err


def test_presets():
    full, quick = DemoConfig.preset(False), DemoConfig.preset(True)
    assert full.out == Path("runs/demo") and quick.out == Path("runs/demo-quick")
    assert quick.n_traces < full.n_traces and max(quick.budgets) < max(full.budgets)
    assert quick.n_eval < full.n_eval and quick.dataset == full.dataset == "word-arith:1,2"
    assert full.template == "chat-few-shot" and full.token_layer in full.layers.split(",")
