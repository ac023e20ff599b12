"""The method registry: one registered object drives evaluate, `--set`, the engine check and the report."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from reasonlens.decode import DecodeConfig
from reasonlens.errors import UserError
from reasonlens.interventions import EvalSpec, MethodOptions, evaluate, get_method, method_names
from reasonlens.interventions.registry import Method, ResolvedMethod, parse_settings, parse_value, register_method
from reasonlens.runs import RunDir, RunSpec


def test_builtin_methods_are_registered_with_their_engines():
    assert {"baseline", "suppress", "rr", "ttts", "budget-force", "nowait"} <= set(method_names())
    assert get_method("rr").engines == ("hf",) and "vllm" in get_method("ttts").engines
    assert get_method("ttts").budgeted and not get_method("suppress").budgeted
    with pytest.raises(UserError, match="unknown --method 'nope'"):
        get_method("nope")


def test_settings_are_typed_by_the_options_dataclass():
    assert parse_settings(["p=0.5", "words = Wait,Hmm"]) == {"p": "0.5", "words": "Wait,Hmm"}
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_settings(["p"])
    rr = get_method("rr").options(MethodOptions(seed=3), {"p": "0.25", "layer": "-1", "words": "So,Then"})
    assert (rr.p, rr.layer, rr.words, rr.seed, rr.repeats) == (0.25, -1, ["So", "Then"], 3, 1)

    @dataclass
    class OwnDefaults:
        p: float = 0.3  # differs from the shared --p default (1.0)
        seed: int = 7

    class Own(Method):
        options_type = OwnDefaults

    assert Own().options(MethodOptions()) == OwnDefaults(0.3, 7)  # shared flags at their defaults: method's own
    assert Own().options(MethodOptions(p=0.9, seed=0)) == OwnDefaults(0.9, 7)  # a flag the user set is passed on
    assert parse_value("none", int | None, "x") is None and parse_value("a.json", Path, "x") == Path("a.json")
    with pytest.raises(UserError, match="--set p: 'high' is not a valid float"):
        get_method("rr").options(MethodOptions(), {"p": "high"})


def test_a_method_registered_elsewhere_runs_through_evaluate(tmp_path):
    """What a new method needs: a class, its decorator; evaluate and the report take it from there."""
    from reasonlens.models import load

    lm = load("organism-cot")  # word-level tokenizer: completions re-encode to the generated ids
    from reasonlens.decode.plugins import LogitsProcessor
    from reasonlens.report.sources import method_label

    class BanIds(LogitsProcessor):
        def __init__(self, ids):
            self.ids = ids

        def __call__(self, logits, state):
            logits[..., self.ids] = float("-inf")
            return logits

    @dataclass
    class Options:
        ban: list[int] | None = None

    @register_method("test-ban-ids", "bans token ids given with --set ban=...")
    class BanMethod(Method):
        options_type = Options

        def resolve(self, lm, options, dataset, split):
            return ResolvedMethod({"name": self.name, "ban": sorted(options.ban or [])}, {}, [])

        def build(self, lm, identity, budget=None):
            return [BanIds(identity["ban"])]

        def label_details(self, identity):
            return [f"{len(identity['ban'])} ids"]

    base = EvalSpec(
        RunSpec(
            out=tmp_path / "base",
            model="organism-cot",
            dataset="synthetic-arith",
            n=2,
            decode=DecodeConfig(max_new_tokens=4, batch_size=2),
        ),
    )
    evaluate(base, lm=lm, quiet=True)
    first = RunDir(tmp_path / "base").results()[0]
    generated = lm.tokenizer(first["completion"], add_special_tokens=False)["input_ids"]
    assert generated, "the organism writes something in 4 tokens"
    banned = generated[:1]
    spec = EvalSpec(
        RunSpec(
            out=tmp_path / "ban",
            model="organism-cot",
            dataset="synthetic-arith",
            n=2,
            decode=DecodeConfig(max_new_tokens=4, batch_size=2),
        ),
        method="test-ban-ids",
        options=MethodOptions(settings={"ban": ",".join(map(str, banned))}),
    )
    evaluate(spec, lm=lm, quiet=True)
    run = RunDir(tmp_path / "ban")
    assert run.manifest["method"] == {"name": "test-ban-ids", "ban": banned}
    again = lm.tokenizer(run.results()[0]["completion"], add_special_tokens=False)["input_ids"]
    assert banned[0] not in again
    assert method_label(run.manifest["method"]) == "test-ban-ids (1 ids)"
    with pytest.raises(ValueError, match="registered twice"):
        register_method("test-ban-ids")(BanMethod)


def test_eval_options_are_generated_from_the_cli_flag_fields():
    """A `cli_flag` field becomes a typer option (typed, or parsed from text); eval offers every MethodOptions one."""
    from dataclasses import dataclass, fields

    import typer
    from typer.testing import CliRunner

    from reasonlens.cli import app as cli_app
    from reasonlens.cli_options import dataclass_from_options, with_dataclass_options
    from reasonlens.interventions.registry import cli_flag

    @dataclass
    class Opts:
        p: float = cli_flag(1.0, "--p", "probability")
        words: list[str] | None = cli_flag(None, "--words", "comma-separated", parse=lambda t: t.split(","))
        hidden: int = 3  # no flag: only --set reaches it

    seen = []
    app = typer.Typer()

    @app.command()
    @with_dataclass_options(Opts, before="name")
    def run(name: str = typer.Option("x", "--name"), **options):
        seen.append(dataclass_from_options(Opts, options, hidden=7))

    runner = CliRunner()
    assert runner.invoke(app, ["--p", "0.25", "--words", "Wait,Hmm"]).exit_code == 0
    assert runner.invoke(app, []).exit_code == 0
    assert runner.invoke(app, ["--words", ""]).exit_code == 0  # empty text: the default, as before generation
    assert seen == [Opts(0.25, ["Wait", "Hmm"], 7), Opts(1.0, None, 7), Opts(1.0, None, 7)]
    assert runner.invoke(app, ["--hidden", "1"]).exit_code == 2  # a field without cli_flag has no option

    help_text = runner.invoke(cli_app, ["eval", "--help"], terminal_width=200).output
    flags = [f.metadata["flag"] for f in fields(MethodOptions) if "flag" in f.metadata]
    assert len(flags) == 19 and all(flag in help_text for flag in flags)
