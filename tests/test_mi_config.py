"""`MIConfig` holds one sub-config per stage; its flat `config` block of mi/summary.json keeps the keys, order and
values it had before the sub-configs, and each sub-config refuses bad values naming the `reasonlens mi` option."""

import json

import pytest
from typer.testing import CliRunner

from reasonlens.analysis.peaks import PeakConfig
from reasonlens.analysis.pipeline import GoldConfig, MIConfig, OutputConfig
from reasonlens.analysis.stages import PopulationConfig, TraceScoring
from reasonlens.cli import app
from reasonlens.errors import UserError

# the `config` block of summaries written before the sub-configs (flat MIConfig, asdict order)
FLAT_KEYS = [
    "layers",
    "token_layer",
    "estimator",
    "sigma",
    "eps",
    "peaks",
    "gold_source",
    "gold_pooling",
    "model",
    "device",
    "decode_argmax",
    "alphabetic_only",
    "population",
    "align",
    "n_bins",
    "stride",
    "min_samples",
    "n_permutations",
    "n_boot",
    "seed",
    "plots",
    "plot_traces",
    "limit",
    "enrichment_words",
]


def test_the_default_config_gives_the_flat_block_of_earlier_summaries():
    block = MIConfig().summary_block()
    assert list(block) == FLAT_KEYS
    # main's flat MIConfig() wrote exactly this text (json.dumps of the block, keys in order)
    assert json.dumps(block) == (
        '{"layers": null, "token_layer": null, "estimator": "paper_hsic", "sigma": 50.0, "eps": 1e-05, '
        '"peaks": {"mode": "iqr", "tau": 1.5, "k": 20}, "gold_source": "solution", "gold_pooling": "last", '
        '"model": null, "device": "cpu", "decode_argmax": true, "alphabetic_only": true, "population": true, '
        '"align": "relative", "n_bins": 10, "stride": 32, "min_samples": 4, "n_permutations": 200, '
        '"n_boot": 2000, "seed": 0, "plots": true, "plot_traces": 6, "limit": null, "enrichment_words": null}'
    )


def test_every_sub_config_field_lands_under_its_flat_key():
    config = MIConfig(
        layers=["3", "final"],
        token_layer="3",
        scoring=TraceScoring(estimator="test-x", sigma="median", eps=1e-3, peaks=PeakConfig(mode="topk", k=5)),
        gold=GoldConfig(source="answer", pooling="mean", model="tiny-llama", device="cuda"),
        population=PopulationConfig(enabled=False, align="step", n_bins=3, stride=8, min_samples=2, n_permutations=0),
        output=OutputConfig(
            decode_argmax=False, alphabetic_only=False, plots=False, plot_traces=1, enrichment_words=["Wait"]
        ),
        n_boot=7,
        seed=3,
        limit=2,
    )
    block = config.summary_block()
    assert list(block) == FLAT_KEYS
    assert block == {
        "layers": ["3", "final"],
        "token_layer": "3",
        "estimator": "test-x",
        "sigma": "median",
        "eps": 1e-3,
        "peaks": {"mode": "topk", "tau": 1.5, "k": 5},
        "gold_source": "answer",
        "gold_pooling": "mean",
        "model": "tiny-llama",
        "device": "cuda",
        "decode_argmax": False,
        "alphabetic_only": False,
        "population": False,
        "align": "step",
        "n_bins": 3,
        "stride": 8,
        "min_samples": 2,
        "n_permutations": 0,
        "n_boot": 7,
        "seed": 3,
        "plots": False,
        "plot_traces": 1,
        "limit": 2,
        "enrichment_words": ["Wait"],
    }
    assert config.gold.identity("m") == {"source": "answer", "pooling": "mean", "model": "m"}


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: GoldConfig(source="question"), "--gold must be one of solution, answer, got 'question'"),
        (lambda: TraceScoring(sigma=0.0), "--sigma must be a positive finite number, got 0.0"),
        (lambda: TraceScoring(eps=float("inf")), "--eps must be a positive finite number, got inf"),
        (lambda: PopulationConfig(align="absolute"), "--align must be 'relative' or 'step', got 'absolute'"),
        (lambda: PopulationConfig(n_bins=0), "--bins must be >= 1, got 0"),
        (lambda: PopulationConfig(enabled=False, stride=0), "--stride must be >= 1, got 0"),
        (lambda: PopulationConfig(n_permutations=-1), "--permutations must be >= 0, got -1"),
        (lambda: MIConfig(n_boot=0), "--n-boot must be >= 1, got 0"),
        (lambda: MIConfig(limit=0), "--limit must be >= 1, got 0"),
    ],
)
def test_each_sub_config_refuses_bad_values_naming_the_option(build, message):
    with pytest.raises(UserError) as caught:
        build()
    assert str(caught.value) == message


def test_the_cli_checks_the_settings_before_opening_the_run(tmp_path):
    missing = tmp_path / "no-run"
    res = CliRunner().invoke(app, ["mi", str(missing), "--no-population", "--bins", "0"])
    assert isinstance(res.exception, UserError) and str(res.exception) == "--bins must be >= 1, got 0"
    res = CliRunner().invoke(app, ["mi", str(missing), "--gold", "question"])
    assert isinstance(res.exception, UserError) and str(res.exception).startswith("--gold must be one of")
    assert not missing.exists()
