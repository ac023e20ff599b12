"""`nowait` (NoWait, arXiv 2506.08343): reflection words banned, completion length and tokens saved reported.

The method is one file (interventions/methods/nowait.py) plus one import line; these tests reach it only
through the registry (evaluate, `--set`, the engine check, the report label)."""

import json

import pytest

from reasonlens.decode import DecodeConfig
from reasonlens.errors import UserError
from reasonlens.eval import paired_bootstrap_diff
from reasonlens.interventions import EvalSpec, MethodOptions, compare_runs, evaluate, get_method, resolve_method
from reasonlens.interventions.methods.nowait import NOWAIT_WORDS
from reasonlens.runs import RunDir, RunSpec

DATASET = "synthetic-arith"


@pytest.fixture(scope="module")
def organism():
    """A shipped organism with a word-level tokenizer: "Wait", "But", "Now" are whole tokens."""
    from reasonlens.models import load

    return load("organism-cot")


def eval_spec(out, method, model, n=4, max_new_tokens=12, **options):
    return EvalSpec(
        RunSpec(
            out=out,
            model=model,
            dataset=DATASET,
            n=n,
            decode=DecodeConfig(max_new_tokens=max_new_tokens, batch_size=n),
        ),
        method=method,
        options=MethodOptions(**options),
    )


def test_nowait_resolves_the_paper_words_to_every_whole_token_variant(organism):
    resolved = resolve_method(organism, "nowait", MethodOptions(), DATASET, "test")
    vocab = organism.tokenizer.get_vocab()
    assert resolved.identity["name"] == "nowait" and resolved.identity["words"] == list(NOWAIT_WORDS)
    texts = {e["text"] for e in resolved.provenance["token_ids"]}
    assert {"Wait", " Wait"} <= texts
    assert resolved.identity["token_ids"] == sorted(vocab[t] for t in texts)
    own = resolve_method(organism, "nowait", MethodOptions(words=["Wait"]), DATASET, "test")
    assert own.identity["token_ids"] == sorted([vocab["Wait"], vocab[" Wait"]])


def test_nowait_never_emits_a_banned_token_and_compare_reports_tokens_saved(tmp_path, organism):
    base = evaluate(eval_spec(tmp_path / "base", "baseline", "organism-cot"), lm=organism, quiet=True)
    cut = evaluate(eval_spec(tmp_path / "nowait", "nowait", "organism-cot"), lm=organism, quiet=True)
    banned = set(RunDir(tmp_path / "nowait").manifest["method"]["token_ids"])
    records = RunDir(tmp_path / "nowait").results()
    for record in records:
        ids = organism.tokenizer(record["completion"], add_special_tokens=False)["input_ids"]
        assert not banned.intersection(ids), record["completion"]
    for summary, run in ((base, "base"), (cut, "nowait")):  # every eval summary reports the completion length
        lengths = [r["n_tokens"] for r in RunDir(tmp_path / run).results()]
        assert summary["mean_tokens"] == pytest.approx(sum(lengths) / len(lengths))

    report = compare_runs([tmp_path / "base", tmp_path / "nowait"], n_boot=300, seed=2)
    (comparison,) = report["comparisons"]
    ref = {r["index"]: r["n_tokens"] for r in RunDir(tmp_path / "base").results()}
    run = {r["index"]: r["n_tokens"] for r in records}
    expected = paired_bootstrap_diff([ref[i] for i in sorted(ref)], [run[i] for i in sorted(ref)], n_boot=300, seed=2)
    assert comparison["tokens_saved"] == pytest.approx(expected.estimate)
    assert comparison["tokens_saved_ci95"] == [expected.lo, expected.hi]
    assert comparison["reference_mean_tokens"] - comparison["mean_tokens"] == pytest.approx(expected.estimate)
    assert [r["mean_tokens"] for r in report["runs"]] == [
        pytest.approx(base["mean_tokens"]),
        pytest.approx(cut["mean_tokens"]),
    ]


def test_nowait_options_come_in_through_set_on_a_tiny_random_model(tmp_path, capsys):
    from reasonlens.cli import main

    out = tmp_path / "nw"
    main(
        [
            "eval",
            "-m",
            "tiny-llama",
            "-d",
            DATASET,
            "--limit",
            "2",
            "--max-new-tokens",
            "5",
            "--method",
            "nowait",
            "--set",
            "words=Wait,Hmm",
            "--set",
            "split_starts=true",
            "-o",
            str(out),
        ]
    )
    printed = capsys.readouterr()
    assert "mean completion length" in printed.out
    method = json.loads((out / "manifest.json").read_text())["method"]
    # byte-level tokenizer: no token spells "Wait" whole, so only the split first pieces are banned (on request)
    assert method["words"] == ["Wait", "Hmm"] and method["split_starts"] is True and method["token_ids"]
    with pytest.raises(SystemExit) as info:
        main(
            [
                "eval",
                "-m",
                "tiny-llama",
                "-d",
                DATASET,
                "--limit",
                "1",
                "--method",
                "nowait",
                "--set",
                "layer=2",
                "-o",
                str(tmp_path / "bad"),
            ]
        )
    assert info.value.code == 2 and "method 'nowait' has no option 'layer'" in capsys.readouterr().err


def test_nowait_registration_engine_and_label():
    from reasonlens.engines import check_engine_support
    from reasonlens.report.sources import method_label

    method = get_method("nowait")
    assert method.engines == ("hf", "vllm")
    check_engine_support("vllm", "nowait")  # generation-only: runs on vLLM too
    assert method_label({"name": "nowait", "words": ["Wait", "Hmm"]}) == "nowait (2 words)"
    with pytest.raises(UserError, match="not a valid bool"):
        method.options(MethodOptions(), {"split_starts": "maybe"})
