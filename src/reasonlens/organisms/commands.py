"""CLI commands: ``reasonlens organisms train NAME``, ``reasonlens organisms check NAME`` and ``reasonlens organisms list``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _accuracy_text(evaluation: dict) -> str:
    """``72.0% [64.7, 79.3]`` from a card's test_accuracy block (cards written by other trainers may lack the CI)."""
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("accuracy"), (int, float)):
        return ""
    text = f"{100 * evaluation['accuracy']:.1f}%"
    if isinstance(evaluation.get("ci_low"), (int, float)) and isinstance(evaluation.get("ci_high"), (int, float)):
        text += f" [{100 * evaluation['ci_low']:.1f}, {100 * evaluation['ci_high']:.1f}]"
    if isinstance(evaluation.get("r"), int):  # recurrent-depth organisms: the core iterations it was scored at
        text += f" at r={evaluation['r']}"
    return text


def _shown(value: object) -> str:
    """A card value for the check table: verdict strings as counts, floats in full."""
    if isinstance(value, str) and set(value) <= {"0", "1"} and len(value) > 16:
        return f"{len(value)} verdicts, {value.count('1')} correct"
    return str(value)


def _difference(card: object, regraded: object) -> str:
    """Where two verdict strings differ (problem indices), else nothing."""
    if not (isinstance(card, str) and isinstance(regraded, str)):
        return ""
    indices = [i for i, (a, b) in enumerate(zip(card, regraded)) if a != b]
    return f"differ at {indices[:10]}{' ...' if len(indices) > 10 else ''}" if indices else ""


def register(app: typer.Typer) -> None:
    """Add the ``organisms`` command group to the top-level app."""
    organisms = typer.Typer(
        help="Train, check and list the model organisms shipped with reasonlens.", no_args_is_help=True
    )

    @organisms.command("train")
    def train_command(
        name: str = typer.Argument(..., help="organism to train: a recipe in reasonlens/recipes/, e.g. organism-cot"),
        out: Optional[Path] = typer.Option(None, "--out", help="output directory (default: the shipped location)"),
        steps: Optional[int] = typer.Option(None, "--max-steps", help="override the number of optimizer steps"),
        eval_n: Optional[int] = typer.Option(None, "--eval-n", help="test problems scored for the card (0: skip)"),
        seed: Optional[int] = typer.Option(None, "--seed", help="override the training seed"),
    ) -> None:
        """Train an organism from its recipe and write the HF directory plus model card (resumes if interrupted)."""
        from reasonlens.errors import UserError
        from reasonlens.organisms.train import train_organism
        from reasonlens.runs.progress import table_console

        overrides = {
            key: value for key, value in (("steps", steps), ("eval_n", eval_n), ("seed", seed)) if value is not None
        }
        for key, value in overrides.items():
            if value < 0 or (key == "steps" and value == 0):
                option = "--max-steps" if key == "steps" else f"--{key.replace('_', '-')}"
                raise UserError(f"{option} must be {'>= 1' if key == 'steps' else '>= 0'}, got {value}")
        command = " ".join(
            ["reasonlens organisms train", name]
            + ([f"--out {out}"] if out else [])
            + [
                f"--{'max-steps' if key == 'steps' else key.replace('_', '-')} {value}"
                for key, value in overrides.items()
            ]
        )
        result = train_organism(name, out, overrides=overrides, command=command)
        console = table_console()
        console.print(f"wrote {result.output_dir}")
        console.print(f"wall time {result.wall_seconds:.0f} s, {result.n_parameters:,} parameters")
        if result.evaluation:
            e = result.evaluation
            console.print(
                f"test accuracy {100 * e.accuracy:.1f}% ({e.n_correct}/{e.n}), "
                f"95% Wilson CI [{100 * e.ci_low:.1f}, {100 * e.ci_high:.1f}]"
            )

    @organisms.command("check")
    def check_command(
        name: str = typer.Argument(..., help="organism whose card to check, e.g. organism-cot"),
        directory: Optional[Path] = typer.Option(
            None, "--dir", help="model directory with its card.json (default: the shipped organism)"
        ),
        out: Optional[Path] = typer.Option(None, "--out", help="keep the evaluation run here (default: a temp dir)"),
        limit: Optional[int] = typer.Option(
            None, "--limit", help="re-grade only the first N problems and compare their verdicts (card outcomes)"
        ),
    ) -> None:
        """Re-grade an organism's weights by an ordinary eval run and compare with its card (exit 1 on mismatch)."""
        from rich.table import Table

        from reasonlens.organisms.evaluation import check_organism
        from reasonlens.runs.progress import table_console

        checks = check_organism(name, directory, out, limit)
        table = Table("field", "card", "re-graded", "match")
        for check in checks:
            verdict = "yes" if check.ok else f"NO {_difference(check.card, check.regraded)}".strip()
            table.add_row(check.field, _shown(check.card), _shown(check.regraded), verdict)
        console = table_console()
        console.print(table)
        if not all(check.ok for check in checks):
            console.print(f"{name}: the re-graded test accuracy differs from the card")
            raise typer.Exit(1)
        console.print(f"{name}: the card's test accuracy is reproduced")

    @organisms.command("list")
    def list_command() -> None:
        """Show the shipped organisms with their dataset, size and recorded test accuracy."""
        from rich.table import Column, Table

        from reasonlens.organisms.train import shipped_organisms, trainable_names
        from reasonlens.runs.progress import table_console

        shipped = shipped_organisms()
        table = Table("shipped", "dataset", "parameters", "test accuracy", "train wall time")
        table.columns.insert(0, Column("name", no_wrap=True))
        for name in sorted(set(shipped) | set(trainable_names())):
            card = shipped.get(name)
            if card is None:
                table.add_row(name, "yes" if name in shipped else "no", "", "", "", "")
                continue
            evaluation = card.get("test_accuracy") or {}
            accuracy = _accuracy_text(evaluation)
            dataset = card.get("eval_dataset") or card.get("dataset") or ""
            wall = card.get("wall_time_seconds")
            table.add_row(
                name,
                "yes",
                f"{dataset} ({card.get('split', 'test')})",
                f"{card['n_parameters']:,}" if isinstance(card.get("n_parameters"), int) else "",
                accuracy,
                f"{wall:.0f} s" if isinstance(wall, (int, float)) else "",
            )
        table_console().print(table)

    app.add_typer(organisms, name="organisms")
