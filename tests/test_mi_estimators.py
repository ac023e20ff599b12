"""The per-trace MI estimator registry: the paper HSIC is the registered default, a new estimator is one
registered class or function, chosen by `MIConfig.scoring.estimator` / `reasonlens mi --estimator`."""

import json
from dataclasses import replace

import pyarrow.parquet as pq
import pytest
import torch

from reasonlens.analysis.pipeline import MIConfig, OutputConfig, analyze_run
from reasonlens.analysis.stages import PopulationConfig, TraceScoring
from reasonlens.decode import DecodeConfig
from reasonlens.errors import UserError
from reasonlens.mi import PaperHSIC, estimator_names, get_estimator, register_estimator
from reasonlens.runs import RunSpec, execute

QUICK = MIConfig(
    n_boot=20, population=PopulationConfig(enabled=False), output=OutputConfig(plots=False, decode_argmax=False)
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    execute(
        RunSpec(
            out=out,
            model="tiny-llama",
            dataset="gsm8k",
            n=2,
            layers="-1",
            decode=DecodeConfig(max_new_tokens=10, batch_size=2),
        ),
        quiet=True,
    )
    return out


def test_the_paper_hsic_is_the_registered_default():
    assert MIConfig().scoring.estimator == "paper_hsic" and "paper_hsic" in estimator_names()
    estimator = get_estimator("paper_hsic")
    assert estimator.factory is PaperHSIC
    assert (
        estimator.describe() == "paper_hsic (reference NOCCO score, coordinates as samples; float64, exact fast path)"
    )
    y, h = torch.randn(16, dtype=torch.float64), torch.randn(5, 16, dtype=torch.float64)
    torch.testing.assert_close(estimator.scorer(y, 50.0, 1e-5)(h), PaperHSIC(y, sigma=50.0, eps=1e-5)(h))
    with pytest.raises(UserError, match="unknown --estimator 'nope'"):
        get_estimator("nope")


@register_estimator("test-cosine", "cosine similarity of each step state to the gold vector")
def cosine_to_gold(y, sigma, eps):
    return lambda h: torch.nn.functional.cosine_similarity(h.to(torch.float64), y.to(torch.float64)[None], dim=-1)


def test_a_registered_estimator_drives_the_analysis(run_dir):
    paper = analyze_run(run_dir, QUICK, quiet=True)
    paper_mi = pq.read_table(run_dir / "mi" / "mi.parquet").to_pylist()
    summary = analyze_run(
        run_dir,
        replace(QUICK, scoring=TraceScoring(estimator="test-cosine")),
        quiet=True,
    )
    assert paper["estimator"].startswith("paper_hsic (") and summary["estimator"].startswith("test-cosine (")
    assert json.loads((run_dir / "mi" / "summary.json").read_text())["config"]["estimator"] == "test-cosine"
    mi = pq.read_table(run_dir / "mi" / "mi.parquet").to_pylist()
    assert len(mi) == len(paper_mi) and all(-1.0 <= r["mi"] <= 1.0 for r in mi)
    assert [r["mi"] for r in mi] != [r["mi"] for r in paper_mi]


def test_unknown_estimator_is_refused_before_anything_is_written(run_dir, tmp_path):
    from reasonlens.cli import main

    before = sorted(p.name for p in (run_dir / "mi").iterdir()) if (run_dir / "mi").exists() else None
    with pytest.raises(SystemExit) as info:
        main(["mi", str(run_dir), "--estimator", "nope", "--no-plots", "--no-population"])
    assert info.value.code == 2
    after = sorted(p.name for p in (run_dir / "mi").iterdir()) if (run_dir / "mi").exists() else None
    assert after == before
