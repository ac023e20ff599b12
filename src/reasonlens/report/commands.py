"""CLI command ``reasonlens report RUN_DIR... --out report.html`` (argument parsing only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _window(text: str) -> tuple[int, int]:
    from reasonlens.errors import UserError

    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--window must be WIDTHxHEIGHT, e.g. 1440x1800, got {text!r}") from None
    if width < 200 or height < 200:
        raise UserError(f"--window must be at least 200x200, got {text!r}")
    return width, height


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""

    @app.command("report")
    def report_command(
        runs: list[Path] = typer.Argument(
            ..., help="Run directories (generate/eval/depth/latent), or folders of them."
        ),
        out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
        title: str = typer.Option("reasonlens report", "--title", help="Page title."),
        max_traces: int = typer.Option(1000, "--max-traces", help="Traces embedded per run in the token view."),
        n_boot: int = typer.Option(2000, "--n-boot", help="Bootstrap resamples for paired comparisons."),
        seed: int = typer.Option(0, "--seed"),
        screenshot: Optional[Path] = typer.Option(
            None, "--screenshot", help="Also save a PNG of the rendered page (needs Chromium)."
        ),
        view: str = typer.Option(
            "",
            "--view",
            help="Trace view shown in the screenshot, e.g. 'run=1&trace=7' "
            "(the same fragment works after '#' in the report's URL).",
        ),
        window: str = typer.Option("1440x1800", "--window", help="Screenshot size WIDTHxHEIGHT."),
    ) -> None:
        """One self-contained HTML report (no network needed) from run directories."""
        from reasonlens.report.builder import ReportConfig, build_report

        path = build_report(runs, out, ReportConfig(title=title, max_traces=max_traces, n_boot=n_boot, seed=seed))
        typer.echo(f"report: {path} ({path.stat().st_size / 1e6:.2f} MB)")
        if screenshot is not None:
            from reasonlens.report.browser import screenshot as take_screenshot

            take_screenshot(path, screenshot, window=_window(window), view=view)
            typer.echo(f"screenshot: {screenshot}")
