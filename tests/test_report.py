"""The HTML report: built from real runs of tiny models (generate + MI, eval methods, depth, latent), checked
against the run files, and rendered in a real headless Chromium (installed with apt-get when missing)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from reasonlens.analysis.pipeline import MIConfig, OutputConfig, analyze_run
from reasonlens.analysis.stages import PopulationConfig
from reasonlens.cli import main
from reasonlens.decode import DecodeConfig
from reasonlens.errors import UserError
from reasonlens.models import byte_level_tokenizer
from reasonlens.report import ReportConfig, build_report, collect_sources, render_report
from reasonlens.report.browser import BrowserUnavailable, ensure_chromium, render_dom, screenshot
from reasonlens.runs import RunDir, RunSpec, execute


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A folder of real runs: tiny-llama generate (+ MI), baseline/suppress/TTTS evals, depth and latent."""
    from reasonlens.interventions import EvalSpec, MethodOptions, evaluate
    from reasonlens.models import load

    root = tmp_path_factory.mktemp("report") / "runs"
    execute(
        RunSpec(
            out=root / "traces",
            model="tiny-llama",
            dataset="gsm8k",
            n=4,
            layers="-1,final",
            decode=DecodeConfig(max_new_tokens=20, batch_size=4),
        ),
        quiet=True,
    )
    analyze_run(
        root / "traces",
        MIConfig(n_boot=100, population=PopulationConfig(enabled=False), output=OutputConfig(plot_traces=2)),
        quiet=True,
    )
    lm = load("tiny-llama")
    decode = DecodeConfig(max_new_tokens=12, batch_size=4)
    for name, method, options in (
        ("baseline", "baseline", MethodOptions()),
        ("suppress", "suppress", MethodOptions(words=["So", "Let"])),
        ("ttts", "ttts", MethodOptions(budgets=[6, 12])),
    ):
        evaluate(
            EvalSpec(
                RunSpec(
                    out=root / "eval" / name,
                    model="tiny-llama",
                    dataset="gsm8k",
                    n=4,
                    decode=decode,
                ),
                method=method,
                options=options,
            ),
            lm=lm,
            quiet=True,
        )
    _recurrent_runs(root)
    return root


def _recurrent_runs(root: Path) -> None:
    from reasonlens.models import load
    from reasonlens.recurrent import RecurrentDepthConfig
    from reasonlens.recurrent.depth import DepthSpec, run_depth
    from reasonlens.recurrent.latent import LatentConfig, LatentItem, analyze_latents
    from reasonlens.recurrent.train import TrainConfig, train_recurrent

    model_dir = root.parent / "recurrent-model"
    config = RecurrentDepthConfig(
        n_embd=32,
        n_heads=4,
        vocab_size=300,
        intermediate_size=48,
        block_size=128,
        n_layers_in_prelude=1,
        n_layers_in_recurrent_block=1,
        n_layers_in_coda=1,
        mean_recurrence=3,
        mean_backprop_depth=2,
    )
    train_recurrent(
        config,
        TrainConfig(steps=2, batch_size=2, seq_len=16, warmup_steps=1),
        "synthetic-hops:1",
        model_dir,
        quiet=True,
    )
    lm = load(str(model_dir))
    run_depth(
        DepthSpec(
            model=str(model_dir),
            dataset="synthetic-hops:1",
            out=root / "depth",
            steps=(1, 2),
            exit_criterion="kl",
            n=2,
            max_new_tokens=3,
        ),
        lm=lm,
        quiet=True,
    )
    analyze_latents(
        lm, [LatentItem("s0", "3 + 1 = 4", "4")], root / "latent", LatentConfig(max_steps=4, star_steps=6), quiet=True
    )


def trace_data(html: str) -> list[dict]:
    match = re.search(r'<script type="application/json" id="trace-data">(.*?)</script>', html, re.S)
    assert match, "the report embeds the trace JSON"
    return json.loads(match.group(1))


# -- content -----------------------------------------------------------------------------------------------------


def test_kinds_are_detected_and_folders_expanded(runs):
    sources = collect_sources([runs])
    kinds = {s.label: s.kind for s in sources}
    assert kinds == {
        "traces": "trace",
        "eval/baseline": "eval",
        "eval/suppress": "eval",
        "eval/ttts": "eval",
        "depth": "depth",
        "latent": "latent",
    }
    # RUN/mi given directly counts as its run; the same run twice is listed once
    assert [s.label for s in collect_sources([runs / "traces" / "mi", runs / "traces"])] == ["traces"]


def test_trace_payload_matches_the_run_files(runs):
    html = render_report([runs / "traces"])
    [payload] = trace_data(html)
    assert payload["layers"] == ["3", "final"] and payload["layer"] == "3"
    mi_rows = pq.read_table(runs / "traces" / "mi" / "mi.parquet").to_pylist()
    run = RunDir(runs / "traces")
    tokenizer = byte_level_tokenizer()
    assert [t["i"] for t in payload["traces"]] == [r["index"] for r in run.results()]
    for trace in payload["traces"]:
        ids = run.load_states(trace["i"])["token_ids"].tolist()
        assert trace["t"] == ids
        for layer in ("3", "final"):
            rows = sorted(
                (r for r in mi_rows if r["index"] == trace["i"] and r["layer"] == layer), key=lambda r: r["step"]
            )
            np.testing.assert_allclose(trace["m"][layer], [r["mi"] for r in rows], rtol=1e-4)
            assert trace["k"][layer] == [r["step"] for r in rows if r["is_peak"]]
        assert all(payload["vocab"][str(i)] == tokenizer.decode([i], skip_special_tokens=False) for i in ids)
    summary = run.summary
    assert f"{100 * summary['accuracy']:.1f}%" in html
    for anchor in ('id="summary"', 'id="traces"', 'id="thinking"', 'id="mi-plots"'):
        assert anchor in html
    for anchor in ('id="interventions"', 'id="depth"', 'id="latent"'):
        assert anchor not in html  # sections only when their data exists


def test_full_report_sections_and_values(runs, tmp_path):
    out = build_report([runs], tmp_path / "report.html", ReportConfig(n_boot=200))
    html = out.read_text()
    for anchor in ("summary", "traces", "thinking", "mi-plots", "interventions", "depth", "latent"):
        assert f'<section id="{anchor}">' in html, anchor
    ttts = json.loads((runs / "eval" / "ttts" / "summary.json").read_text())
    # the budget curve has one point per budget, and each accuracy appears in the comparison table
    chart = html[html.index("Accuracy vs token budget") :]
    assert len(re.findall(r"ttts[^<]*: x=", chart)) == len(ttts["budgets"]) == 2
    depth = json.loads((runs / "depth" / "summary.json").read_text())
    assert "core iterations / token" in html and "exit kl" in html
    adaptive_hist = depth["adaptive"]["iterations_histogram"]
    assert html.count("</title></rect>") >= len(adaptive_hist)  # histogram bars
    assert html.count("data:image/png;base64,") >= 3  # MI plots and latent figures are inline
    # self-contained: no network references at all
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "@import" not in html and "url(http" not in html


def test_paired_comparison_uses_the_baseline_as_reference(runs):
    html = render_report([runs / "eval"], ReportConfig(n_boot=200))
    table = html[html.index('<section id="interventions">') :]
    assert "reference" in table and "suppress (thinking, k=2)" in table
    assert "Δ vs reference" in table


def test_max_traces_limits_the_embedded_traces(runs):
    [payload] = trace_data(render_report([runs / "traces"], ReportConfig(max_traces=3)))
    assert len(payload["traces"]) == 3 and payload["omitted"] == 1


def test_user_errors(runs, tmp_path, capsys):
    with pytest.raises(UserError, match="not a reasonlens run directory"):
        render_report([tmp_path])
    with pytest.raises(UserError, match="run directory not found"):
        render_report([tmp_path / "missing"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "bad"), "--out", str(tmp_path / "r.html")])
    assert exc.value.code == 2 and "manifest.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["report", str(runs / "traces"), "--out", str(tmp_path), "--max-traces", "5"])
    assert exc.value.code == 2 and "is a directory" in capsys.readouterr().err


def test_cli_writes_the_report(runs, tmp_path, capsys):
    main(["report", str(runs / "traces"), str(runs / "depth"), "--out", str(tmp_path / "r.html"), "--n-boot", "50"])
    assert "report:" in capsys.readouterr().out
    html = (tmp_path / "r.html").read_text()
    assert '<section id="depth">' in html and '<section id="traces">' in html


# -- in a real browser ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        return ensure_chromium(install=True)
    except BrowserUnavailable as exc:
        pytest.skip(f"browser tests need Chromium, which is unavailable here: {exc}")


def _synthetic_run(root: Path, n: int, length: int) -> Path:
    """A run of `n` traces with token ids and MI tables written directly (paging does not need a model)."""
    import pyarrow as pa

    from reasonlens.analysis.stages import MI_SCHEMA

    run = RunDir(root)
    run.start(
        {
            "command": "generate",
            "model": "tiny-llama",
            "dataset": "gsm8k",
            "split": "test",
            "n": n,
            "layers": ["3"],
            "decode": {"max_new_tokens": length},
        }
    )
    rng = np.random.default_rng(0)
    rows = {k: [] for k in ("index", "layer", "step", "mi", "token_id", "is_peak")}
    with run.appender() as appender:
        records = []
        for i in range(n):
            ids = rng.integers(32, 120, size=length - i % 5)
            run.write_states(
                i, {"token_ids": torch.tensor(ids), "layer.3": torch.zeros(len(ids), 4)}, {"index": str(i)}
            )
            mi = rng.random(len(ids))
            rows["index"] += [i] * len(ids)
            rows["layer"] += ["3"] * len(ids)
            rows["step"] += list(range(len(ids)))
            rows["mi"] += mi.tolist()
            rows["token_id"] += ids.tolist()
            rows["is_peak"] += (mi > 0.95).tolist()
            records.append(
                {
                    "index": i,
                    "id": f"p{i}",
                    "prompt": "Q",
                    "completion": "",
                    "gold": "1",
                    "extracted": None,
                    "correct": i % 3 == 0,
                    "status": "ok",
                    "n_tokens": len(ids),
                }
            )
        appender.append(records)
    (root / "mi").mkdir()
    pq.write_table(pa.table(rows, schema=MI_SCHEMA), root / "mi" / "mi.parquet")
    (root / "mi" / "summary.json").write_text(
        json.dumps(
            {"command": "mi", "layers": ["3"], "token_layer": "3", "model": "tiny-llama", "n": n, "per_layer": {}}
        )
    )
    return root


def _tokens_in(dom: str) -> int:
    return len(re.findall(r'<span class="tok( peak)?"', dom))


def test_browser_renders_every_token_without_errors(runs, chromium, tmp_path):
    page = build_report([runs / "traces"], tmp_path / "report.html")
    rendered = render_dom(page, chromium)
    assert 'data-ready="1"' in rendered.dom, "the page script ran to the end"
    first = RunDir(runs / "traces").results()[0]
    expected = RunDir(runs / "traces").load_states(first["index"])["token_ids"].shape[0]
    assert f'data-rendered="{first["index"]}"' in rendered.dom
    assert _tokens_in(rendered.dom) == expected == first["n_tokens"]
    assert f'data-count="{expected}"' in rendered.dom
    peaks = pq.read_table(runs / "traces" / "mi" / "mi.parquet").to_pylist()
    n_peaks = sum(r["is_peak"] for r in peaks if r["index"] == first["index"] and r["layer"] == "3")
    assert rendered.dom.count('class="tok peak"') == n_peaks
    assert 'data-js-error="1"' not in rendered.dom and '<div id="js-errors" hidden=""></div>' in rendered.dom
    assert not rendered.console_errors()

    png = tmp_path / "shot.png"
    screenshot(page, png, chromium, window=(1280, 900))
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    assert pixels.shape[:2] == (900, 1280)
    colours = np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert pixels.std() > 0.05 and len(colours) > 50, "the screenshot is not blank"


def test_browser_follows_the_url_fragment(runs, chromium, tmp_path):
    page = build_report([runs / "traces"], tmp_path / "report.html")
    dom = render_dom(page, chromium, view="trace=2&layer=final").dom
    expected = RunDir(runs / "traces").load_states(2)["token_ids"].shape[0]
    assert 'data-rendered="2"' in dom and 'data-layer="final"' in dom and _tokens_in(dom) == expected
    peaks = pq.read_table(runs / "traces" / "mi" / "mi.parquet").to_pylist()
    assert dom.count('class="tok peak"') == sum(
        r["is_peak"] for r in peaks if r["index"] == 2 and r["layer"] == "final"
    )


def test_browser_pages_through_many_traces(chromium, tmp_path):
    run = _synthetic_run(tmp_path / "many", n=60, length=30)
    page = build_report([run], tmp_path / "many.html")
    dom = render_dom(page, chromium).dom
    assert "page 1 / 3 · 60 traces" in dom
    list_rows = re.search(r'<div class="tv-list">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    assert list_rows.count("<tr") == 25
    assert _tokens_in(dom) == 30  # only the selected trace is rendered
    assert 'data-js-error="1"' not in dom


def test_browser_detects_script_errors(runs, chromium, tmp_path):
    """The error check can fail: a page with a throwing script is flagged both in the DOM and in the log."""
    html = render_report([runs / "traces"]).replace("</body>", "<script>undefinedFunction();</script></body>")
    page = tmp_path / "broken.html"
    page.write_text(html)
    rendered = render_dom(page, chromium)
    assert 'data-js-error="1"' in rendered.dom and "undefinedFunction" in rendered.dom
