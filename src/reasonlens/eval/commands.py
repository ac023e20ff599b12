"""CLI commands of the evaluation area: ``regrade`` (argument parsing only)."""

from __future__ import annotations

from pathlib import Path

import typer


def regrade(
    runs: list[Path] = typer.Argument(
        ..., help="Run directories (eval/generate runs; budget runs re-grade every budget)."
    ),
    show: int = typer.Option(10, help="Changed verdicts to list per run."),
) -> None:
    """Re-grade finished runs' completions with the current grader, in place (atomic, resumable)."""
    from reasonlens.eval.grade import GRADER_VERSION, Grader
    from reasonlens.eval.regrade import regrade_run
    from reasonlens.runs.progress import progress_bar

    with Grader() as grader, progress_bar(transient=True) as bar:
        task = bar.add_task("regrade", total=None, info="")

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        for run in runs:
            bar.update(task, description=f"regrade {run}", completed=0)
            for report in regrade_run(run, grader=grader, progress=progress):
                typer.echo(
                    f"{report.run}: {report.n} samples, {len(report.changes)} verdicts changed, accuracy "
                    f"{report.accuracy_before:.3f} -> {report.accuracy_after:.3f} (grader version {GRADER_VERSION})"
                )
                for change in report.changes[:show]:
                    before, after = change["before"], change["after"]
                    typer.echo(
                        f"  #{change['index']} gold {change['gold']!r}: {before['extracted']!r} "
                        f"{before['correct']} -> {after['extracted']!r} {after['correct']}"
                    )


def register(app: typer.Typer) -> None:
    app.command(name="regrade")(regrade)
