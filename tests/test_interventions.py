"""`evaluate` / `compare_runs` (the API behind `reasonlens eval` and `compare-eval`) on tiny real models."""

import json

import pytest

from reasonlens.analysis.tokens import WordCount, write_token_set
from reasonlens.decode import DecodeConfig
from reasonlens.errors import UserError
from reasonlens.eval import paired_bootstrap_diff
from reasonlens.interventions import EvalSpec, MethodOptions, compare_runs, evaluate, resolve_method
from reasonlens.runs import RunDir, RunSpec

DATASET = "synthetic-arith"


@pytest.fixture(scope="module")
def organism():
    """A shipped organism (1M parameters, word-level tokenizer): "So", "Then", "Wait" are single tokens, which
    suppression bans (the byte-level tiny models have no whole-word tokens)."""
    from reasonlens.models import load

    return load("organism-cot")


def spec(tmp_path, name, method="baseline", model="tiny-llama", **options):
    return EvalSpec(
        RunSpec(
            out=tmp_path / name,
            model=model,
            dataset=DATASET,
            n=3,
            decode=DecodeConfig(max_new_tokens=6, batch_size=3),
        ),
        method=method,
        options=MethodOptions(**options),
    )


def test_eval_writes_a_resumable_run_with_the_method_as_identity(tmp_path, organism, capsys):
    sup = spec(tmp_path, "sup", "suppress", model="organism-cot", words=["So", "Wait"])
    summary = evaluate(sup, lm=organism)
    run = RunDir(tmp_path / "sup")
    assert summary["n"] == 3 and len(run.results()) == 3
    listed = run.manifest["token_ids"]  # every banned id with its text, in the manifest and on the console
    assert {e["text"] for e in listed} == {"So", " So", " so", "Wait", " Wait"} and all(e["whole"] for e in listed)
    vocab = organism.tokenizer.get_vocab()
    assert sorted(e["id"] for e in listed) == sorted(vocab[e["text"]] for e in listed)
    assert run.manifest["method"] == {
        "name": "suppress",
        "control": "thinking",
        "k": 2,
        "excluded_answer_format": ["boxed", "fbox"],  # synthetic-arith writes \boxed{N}; never suppressed
        "words": ["So", "Wait"],
        "token_ids": sorted(e["id"] for e in listed),
    }
    assert "suppressing 5 token ids: So: " in capsys.readouterr().err.replace("\n", " ")
    assert run.manifest["token_set"]["source_kind"] == "command line"
    lines = (tmp_path / "sup" / "results.jsonl").read_text().splitlines()
    assert evaluate(sup, lm=organism)["n"] == 3
    assert (tmp_path / "sup" / "results.jsonl").read_text().splitlines() == lines  # resumed: nothing re-decoded
    with pytest.raises(UserError, match="different 'method'"):
        evaluate(spec(tmp_path, "sup", "suppress", model="organism-cot", words=["So"]), lm=organism)


def test_split_first_pieces_are_banned_only_on_request_with_a_warning(tiny_llama):
    # Byte-level tiny tokenizer: no token spells "So" whole, so by default nothing is banned (and it says so).
    plain = resolve_method(tiny_llama, "suppress", MethodOptions(words=["So"]), DATASET, "test")
    assert plain.identity["token_ids"] == [] and any("no single token spells So" in w for w in plain.warnings)
    opted = resolve_method(tiny_llama, "suppress", MethodOptions(words=["So"], split_starts=True), DATASET, "test")
    assert opted.identity["split_starts"] is True
    assert {e["text"] for e in opted.provenance["token_ids"]} == {"S", "s"}
    assert not any(e["whole"] for e in opted.provenance["token_ids"])
    assert any("--split-starts also bans" in w and "So->'S'" in w for w in opted.warnings)


def test_rr_eval_resolves_the_default_layer(tmp_path, tiny_llama):
    evaluate(spec(tmp_path, "rr", "rr", words=["So", "a", "e", "1", "2"], p=1.0), lm=tiny_llama)
    manifest = RunDir(tmp_path / "rr").manifest
    assert manifest["method"]["layer"] == 2 and manifest["method"]["p"] == 1.0  # floor(2 * 4 / 3)
    with pytest.raises(UserError, match="--rr-layer 9"):
        evaluate(spec(tmp_path, "rr9", "rr", layer=9), lm=tiny_llama)


def test_budgeted_eval_writes_one_sub_run_per_budget(tmp_path, tiny_llama):
    summary = evaluate(spec(tmp_path, "ttts", "ttts", budgets=[3, 5], answer_tokens=2), lm=tiny_llama)
    assert set(summary["accuracy_by_budget"]) == {"3", "5"}
    assert json.loads((tmp_path / "ttts" / "summary.json").read_text())["budgets"] == [3, 5]
    for budget in (3, 5):
        sub = RunDir(tmp_path / "ttts" / f"budget-{budget}")
        assert sub.manifest["method"]["budget"] == budget and sub.manifest["decode"]["max_new_tokens"] == budget
        for record in sub.results():  # every row ran to its budget, then the forced answer (2 free tokens)
            assert record["n_tokens"] >= budget + 2
    with pytest.raises(UserError, match="--budgets"):
        evaluate(spec(tmp_path, "bf", "budget-force"), lm=tiny_llama)


TRACES = [
    "So we add apples. Then we add more apples and count the apples. So the total is 5.",
    "Let us count marbles. Then marbles go. So marbles are 3. Therefore the answer is 3 marbles.",
    "First find cookies. Then cookies. Hmm, cookies again. So we get 7 cookies. The answer is 7.",
]


def make_run(path, correct, ids=None, dataset=DATASET, split="test", method=None, completions=None):
    run = RunDir(path)
    run.start(
        {
            "command": "generate",
            "model": "m",
            "dataset": dataset,
            "split": split,
            "method": method or {"name": "baseline"},
        }
    )
    ids = ids or [f"p{i}" for i in range(len(correct))]
    with run.appender() as appender:
        appender.append(
            [
                {
                    "index": i,
                    "id": ids[i],
                    "completion": (completions or [""] * len(correct))[i],
                    "correct": bool(c),
                    "status": "ok",
                }
                for i, c in enumerate(correct)
            ]
        )
    return path


def test_random_control_suppression_uses_the_control_runs_traces(tmp_path, organism):
    control = make_run(tmp_path / "gen", [0, 0, 0], completions=TRACES, split="train")
    resolved = resolve_method(
        organism,
        "suppress",
        MethodOptions(words=["So", "Then"], control="random", control_run=control, seed=4),
        DATASET,
        "test",
    )
    identity = resolved.identity
    assert identity["thinking_words"] == ["So", "Then"] and len(identity["words"]) == 2
    assert {w.lower() for w in identity["words"]}.isdisjoint({"so", "then"})
    assert resolved.provenance["control_run"]["split"] == "train" and resolved.warnings == []
    assert identity["token_ids"] and all(e["whole"] for e in resolved.provenance["token_ids"])
    again = resolve_method(
        organism,
        "suppress",
        MethodOptions(words=["So", "Then"], control="random", control_run=control, seed=4),
        DATASET,
        "test",
    )
    assert again.identity == identity
    with pytest.raises(UserError, match="--control-run"):
        resolve_method(organism, "suppress", MethodOptions(control="random"), DATASET, "test")


def test_token_set_provenance_and_leakage_warning(tmp_path, organism):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"dataset": DATASET, "split": "test", "model": "m"}))
    path = write_token_set(
        run / "tokens.jsonl", [WordCount("Wait", 9, [1]), WordCount("So", 12, [2]), WordCount("Hmm", 3, [3])]
    )
    resolved = resolve_method(organism, "suppress", MethodOptions(token_set=path, k=2), DATASET, "test")
    assert resolved.identity["words"] == ["So", "Wait"]  # most frequent first, top-2
    assert resolved.provenance["token_set"]["source_split"] == "test"
    assert any("split being evaluated" in w for w in resolved.warnings)
    clean = resolve_method(
        organism, "suppress", MethodOptions(token_set=path, token_set_split="train"), DATASET, "test"
    )
    assert clean.warnings == [] and clean.provenance["token_set"]["source_split"] == "train"
    loose = tmp_path / "loose.jsonl"
    write_token_set(loose, [WordCount("So", 1, [2])])
    unknown = resolve_method(organism, "rr", MethodOptions(token_set=loose), DATASET, "test")
    assert any("unknown" in w for w in unknown.warnings)
    paper = resolve_method(organism, "rr", MethodOptions(), DATASET, "test").warnings  # hand-chosen: no leakage
    assert not any(w.startswith("token set") for w in paper)
    assert any("no single token spells" in w and "Okay" in w for w in paper)  # not in the organism's vocabulary


def test_token_set_file_carries_its_source_split(tmp_path, organism):
    learnt_on_train = write_token_set(
        tmp_path / "anywhere" / "words.jsonl",
        [WordCount("So", 5, [2])],
        source={"dataset": DATASET, "split": "train", "model": "m"},
    )
    resolved = resolve_method(organism, "rr", MethodOptions(token_set=learnt_on_train), DATASET, "test")
    assert resolved.warnings == [] and resolved.provenance["token_set"]["source_split"] == "train"
    learnt_on_test = write_token_set(
        tmp_path / "t.jsonl", [WordCount("So", 5, [2])], source={"dataset": DATASET, "split": "test", "model": "m"}
    )
    leaky = resolve_method(organism, "rr", MethodOptions(token_set=learnt_on_test), DATASET, "test")
    assert any("split being evaluated" in w for w in leaky.warnings)


def test_compare_runs_pairs_problems_and_reports_the_bootstrap_ci(tmp_path):
    ref = [1, 0, 0, 1, 0, 0, 0, 1, 0, 0]
    other = [1, 1, 1, 1, 0, 1, 0, 1, 1, 0]
    a = make_run(tmp_path / "a", ref)
    b = make_run(tmp_path / "b", other, method={"name": "rr"})
    report = compare_runs([a, b], n_boot=500, seed=1)
    (comparison,) = report["comparisons"]
    expected = paired_bootstrap_diff(other, ref, n_boot=500, seed=1)
    assert comparison["n_paired"] == 10 and comparison["difference"] == pytest.approx(0.4)
    assert comparison["difference_ci95"] == [expected.lo, expected.hi]
    assert [r["accuracy"] for r in report["runs"]] == [pytest.approx(0.3), pytest.approx(0.7)]
    with pytest.raises(UserError, match="not on the same problems"):
        compare_runs([a, make_run(tmp_path / "c", other, ids=[f"q{i}" for i in range(10)])])
    with pytest.raises(UserError, match="dataset"):
        compare_runs([a, make_run(tmp_path / "d", other, dataset="gsm8k")])


def test_compare_budget_run_against_plain_and_budget_runs(tmp_path):
    plain = make_run(tmp_path / "plain", [0, 0, 1, 0])

    def budget_run(name, results):
        top = RunDir(tmp_path / name)
        top.start(
            {
                "command": "eval",
                "model": "m",
                "dataset": DATASET,
                "split": "test",
                "method": {"name": "ttts"},
                "budgets": sorted(results),
            }
        )
        for budget, correct in results.items():
            make_run(tmp_path / name / f"budget-{budget}", correct)
        return tmp_path / name

    tt = budget_run("tt", {8: [1, 0, 1, 0], 16: [1, 1, 1, 1]})
    report = compare_runs([plain, tt], n_boot=200)
    assert {(c["budget"], c["reference_budget"]) for c in report["comparisons"]} == {(8, None), (16, None)}
    assert {c["budget"]: c["difference"] for c in report["comparisons"]} == {
        8: pytest.approx(0.25),
        16: pytest.approx(0.75),
    }
    bf = budget_run("bf", {8: [0, 0, 0, 0], 32: [1, 1, 1, 1]})
    report = compare_runs([tt, bf], n_boot=200)
    assert [(c["budget"], c["reference_budget"]) for c in report["comparisons"]] == [(8, 8)]  # only shared budgets
    report = compare_runs([tt, plain], n_boot=200)  # a plain run against a budget reference: every budget
    assert {c["reference_budget"]: c["difference"] for c in report["comparisons"]} == {
        8: pytest.approx(-0.25),
        16: pytest.approx(-0.75),
    }


def test_cli_compare_eval_and_bad_method(tmp_path, capsys):
    from reasonlens.cli import main

    a = make_run(tmp_path / "a", [1, 0, 0, 1])
    b = make_run(tmp_path / "b", [1, 1, 0, 1])
    out = tmp_path / "cmp.json"
    main(["compare-eval", str(a), str(b), "--n-boot", "100", "--json", str(out)])
    assert "paired difference" in capsys.readouterr().out
    assert json.loads(out.read_text())["comparisons"][0]["difference"] == pytest.approx(0.25)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "-m", "tiny-llama", "-d", DATASET, "--limit", "1", "--method", "nope", "-o", str(tmp_path / "x")])
    assert exit_info.value.code == 2 and "unknown --method 'nope'" in capsys.readouterr().err


def test_suppression_sweep_writes_one_run_per_variant_and_a_table(tmp_path, organism):
    import pyarrow.parquet as pq

    from reasonlens.interventions import run_sweep, suppression_variants

    names = [v.name for v in suppression_variants([0, 1, 2], [0, 1])]
    assert names == [
        "baseline",
        "thinking-k1",
        "random-k1-s0",
        "random-k1-s1",
        "thinking-k2",
        "random-k2-s0",
        "random-k2-s1",
    ]
    control = make_run(tmp_path / "gen", [0, 0, 0], completions=TRACES, split="train")
    base = spec(tmp_path, "sweep", model="organism-cot", words=["So", "Then"], control_run=control)
    rows = run_sweep(base, suppression_variants([0, 1], [0]), lm=organism)
    assert [r["name"] for r in rows] == ["baseline", "thinking-k1", "random-k1-s0"]
    table = pq.read_table(tmp_path / "sweep" / "sweep.parquet").to_pydict()
    assert table["name"] == ["baseline", "thinking-k1", "random-k1-s0"] and table["n"] == [3, 3, 3]
    assert RunDir(tmp_path / "sweep" / "thinking-k1").manifest["method"]["words"] == ["So"]
    random_words = RunDir(tmp_path / "sweep" / "random-k1-s0").manifest["method"]["words"]
    assert len(random_words) == 1 and random_words[0].lower() != "so"
