"""Report figures fit for a paper: messages instead of empty axes, one axis per statistic, integer ticks,
downloadable charts, axis labels, wide tables when piped."""

from __future__ import annotations

import base64
import re

import pytest

from reasonlens.analysis import plots
from reasonlens.report.svg import Axes, Series, _ticks, bar_chart, downloadable, line_chart


@pytest.fixture
def figures(monkeypatch):
    kept = []

    def keep(fig, path):
        kept.append(fig)
        return path.name

    monkeypatch.setattr(plots, "_save", keep)
    return kept


def test_no_thinking_words_is_a_message_not_empty_axes(figures, tmp_path):
    plots.plot_token_histogram(tmp_path / "t.png", [], layer="29")
    (fig,) = figures
    (ax,) = fig.axes
    assert not ax.axison
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "No thinking tokens at layer 29" in texts and "--peaks topk" in texts


def test_hsic_and_cka_get_separate_axes_with_integer_bins(figures, tmp_path):
    rows = [
        {"layer": "29", "statistic": s, "align": "relative", "bin": b, "n": 30, "value": v * (b + 1)}
        for s, v in (("hsic", 1e-3), ("linear_cka", 0.8))
        for b in range(3)
    ]
    plots.plot_population(tmp_path / "p.png", rows)
    (fig,) = figures
    assert [ax.get_title() for ax in fig.axes] == [
        "HSIC (Gaussian kernel) with gold, across problems",
        "linear CKA with gold, across problems",
    ]
    fig.canvas.draw()
    for ax in fig.axes:
        assert all(float(t).is_integer() for t in ax.get_xticks())
    hsic, cka = fig.axes
    assert hsic.get_ylim()[1] < 0.01 < cka.get_ylim()[1]  # each on its own scale


def test_svg_integer_ticks_and_download_link():
    assert _ticks(0.9, 4.1, integer=True) == [1, 2, 3, 4]
    assert 0.5 in _ticks(0, 2)  # plain axes may use halves
    svg = line_chart(Axes("bins", "bin", "value"), [Series("s", [1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4])])
    x_labels = re.findall(r'text-anchor="middle">([0-9.]+)</text>', svg)
    assert x_labels and all("." not in label for label in x_labels)
    counts = bar_chart(Axes("h", "iterations", "tokens"), ["1", "2"], [1.0, 3.0])
    assert not re.search(r'text-anchor="end">[0-9]+\.5<', counts)
    box = downloadable(svg, "bins.svg")
    href = re.search(r'download="bins.svg" href="data:image/svg\+xml;base64,([^"]+)"', box).group(1)
    assert base64.b64decode(href).decode("utf-8") == svg


def test_result_tables_are_not_cut_at_80_columns_when_piped(monkeypatch, capsys):
    from rich.table import Table

    from reasonlens.runs.progress import PIPED_WIDTH, table_console

    monkeypatch.delenv("COLUMNS", raising=False)
    console = table_console()
    assert console.width == PIPED_WIDTH
    table = Table("run", "method", "accuracy [95% CI]")
    table.add_row("runs/" + "a-long-run-directory-name" * 3, "suppress(random k=10) budget 256", "0.250 [0.046, 0.699]")
    console.print(table)
    out = capsys.readouterr().out
    assert "a-long-run-directory-name" * 3 in out and "0.250 [0.046, 0.699]" in out
