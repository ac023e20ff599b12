"""`reasonlens demo` on a tiny real model: every stage runs or says why it is skipped, the report is written,
a failing stage is reported without stopping the demo, and a second run resumes instead of redoing work."""

from __future__ import annotations

import json
import re
from dataclasses import fields, replace
from pathlib import Path

import pytest

import reasonlens.demo as demo
from reasonlens.cli import main
from reasonlens.demo import DemoConfig, organism_available, run_demo
from reasonlens.errors import UserError
from reasonlens.train.recipes import RECIPES_DIR


def tiny_config(out: Path) -> DemoConfig:
    return replace(
        DemoConfig.preset(quick=True),
        out=out,
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


def test_the_shipped_plans_resolve_to_the_known_values():
    """The values DemoConfig held as code defaults before the plan became recipes/demo.json."""
    full, quick = DemoConfig.preset(False), DemoConfig.preset(True)
    assert (full.out, full.quick, quick.out, quick.quick) == (Path("runs/demo"), False, Path("runs/demo-quick"), True)
    assert (full.n_traces, full.n_eval, full.n_boot) == (64, 80, 1000)
    assert (quick.n_traces, quick.n_eval, quick.n_boot) == (16, 16, 300)
    assert (full.budgets, full.control_seeds, full.depth_steps) == ((16, 32, 48), (0, 1, 2), (1, 2, 4, 8, 16))
    assert (quick.budgets, quick.control_seeds, quick.depth_steps) == ((16, 32), (0,), (1, 2, 4, 8))
    assert (full.layers, quick.layers, full.token_layer) == ("20,-1", "20", "20")
    assert full.model == "smollm2-135m" and full.template == "chat-few-shot"
    assert quick.dataset == full.dataset == "word-arith:1,2"
    assert (full.reasoner, full.reasoner_twin) == ("organism-reasoner", "organism-reasoner-noreflect")
    for plan in (full, quick):
        assert isinstance(plan.out, Path) and type(plan.n_traces) is int
        for name in ("budgets", "depth_steps", "control_seeds"):
            value = getattr(plan, name)
            assert type(value) is tuple and all(type(v) is int for v in value), (name, value)
    # quick changes only what its section names; the rest is the full plan's
    changed = {f.name for f in fields(DemoConfig) if getattr(full, f.name) != getattr(quick, f.name)}
    assert changed == set(json.loads((RECIPES_DIR / "demo.json").read_text())["quick"]) - {"_comment"} | {"quick"}
    assert DemoConfig.preset(True, Path("elsewhere")).out == Path("elsewhere")


def test_a_user_recipe_is_the_plan(tmp_path):
    data = json.loads((RECIPES_DIR / "demo.json").read_text())
    data.update(name="mine", n_traces=7, budgets=[8], token_layer=None)
    del data["quick"]
    recipe = tmp_path / "mine.json"
    recipe.write_text(json.dumps(data))
    plan = DemoConfig.preset(False, recipe=recipe)
    assert (plan.n_traces, plan.budgets, plan.token_layer, plan.n_eval) == (7, (8,), None, 80)
    assert plan == replace(DemoConfig.preset(False), n_traces=7, budgets=(8,), token_layer=None)


def bad_recipe_error(tmp_path, capsys, change, *options: str) -> str:
    """The one stderr line of `reasonlens demo --recipe` on the shipped recipe changed by ``change``."""
    data = json.loads((RECIPES_DIR / "demo.json").read_text())
    change(data)
    recipe = tmp_path / "bad.json"
    recipe.write_text(json.dumps(data))
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--recipe", str(recipe), "--out", str(tmp_path / "d"), *options])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {recipe}") and not (tmp_path / "d").exists(), err
    return err


def test_bad_recipes_are_one_line_user_errors_naming_the_key(tmp_path, capsys):
    def error(change, *options: str) -> str:
        return bad_recipe_error(tmp_path, capsys, change, *options)

    assert "unknown field 'n_trace'; did you mean 'n_traces'?" in error(lambda d: d.update(n_trace=3))
    assert "field 'n_traces' must be an integer" in error(lambda d: d.update(n_traces="64"))
    assert "field 'budgets' must be a non-empty list of integers" in error(lambda d: d.update(budgets=[16, "x"]))
    assert "field 'budgets' must be a list" in error(lambda d: d.update(budgets=16))
    assert "field 'model' must be a string" in error(lambda d: d.update(model=3))
    assert "field 'model' must not be null" in error(lambda d: d.update(model=None))
    assert "missing field(s) 'n_eval'" in error(lambda d: d.pop("n_eval"))
    assert "'kind' must be one of" in error(lambda d: d.pop("kind"))
    assert "'kind' must be 'demo' in a demo recipe" in error(lambda d: d.update(kind="llama-organism"))
    assert "bad.json: quick: field 'n_boot' must be an integer" in error(
        lambda d: d["quick"].update(n_boot=1.5), "--quick"
    )
    assert "bad.json: quick: unknown field 'quick'" in error(lambda d: d["quick"].update(quick=True), "--quick")
    assert "'quick' must be a JSON object" in error(lambda d: d.update(quick=True), "--quick")
    assert "no 'quick' section" in error(lambda d: d.pop("quick"), "--quick")
    missing = tmp_path / "missing.json"
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--recipe", str(missing)])
    assert exc.value.code == 2 and capsys.readouterr().err == f"error: {missing}: recipe not found\n"
