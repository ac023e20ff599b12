"""CLI commands of the recurrent-depth module: train-recurrent, depth, latent (argument parsing only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from reasonlens.cli_options import device_option, dtype_option


def register(app: typer.Typer) -> None:
    """Add `train-recurrent`, `depth` and `latent` to the reasonlens CLI."""

    @app.command("train-recurrent")
    def train_recurrent_command(
        config: str = typer.Option(
            ...,
            "--config",
            "-c",
            help="JSON with 'model' (huginn config fields) or 'init' "
            "(model dir), and 'train' (TrainConfig fields); or a recipe name from reasonlens/recipes/: "
            "organism-recurrent.",
        ),
        data: str = typer.Option(
            ...,
            "--data",
            help="JSONL file ({'text'} or {'prompt','completion'} per line) "
            "or a dataset name, e.g. synthetic-flips:1-8.",
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Output directory (re-running resumes its checkpoint)."),
        device: str = typer.Option(
            "cpu", "--device", callback=device_option, help="cpu, cuda, ... (bf16 autocast on CUDA)."
        ),
        steps: Optional[int] = typer.Option(None, "--max-steps", help="Override train.steps (optimizer steps)."),
    ) -> None:
        """Train a recurrent-depth model with randomized depth and truncated backprop."""
        from reasonlens.recurrent.train import load_train_file, train_recurrent

        model_config, train_config, extra = load_train_file(config)
        if steps is not None:
            train_config.steps = steps
        result = train_recurrent(model_config, train_config, data, out, init=extra.get("init"), device=device)
        typer.echo(f"trained {result.steps} steps in {result.seconds:.1f}s, final loss {result.final_loss:.4f}")
        typer.echo(f"model: {out}")

    @app.command("depth")
    def depth_command(
        model: str = typer.Option(
            ..., "--model", "-m", help="Recurrent-depth model (huginn-format or Ouro) directory or built-in name."
        ),
        dataset: Optional[str] = typer.Option(
            None,
            "--dataset",
            "-d",
            help="Any dataset the toolkit accepts (default for a model organism: its held-out test set).",
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Run directory (resumable)."),
        steps: str = typer.Option("1,2,4,8,16,32", "--recurrence", help="Comma-separated core iteration counts r."),
        exit_criterion: Optional[str] = typer.Option(
            None,
            "--exit",
            help="Adaptive exit criterion, by registered name (reasonlens.recurrent.exit): e.g. kl, cosine, "
            "argmax-stability; ouro-gate for Ouro models. An unknown name lists them all.",
        ),
        threshold: Optional[float] = typer.Option(
            None, "--threshold", help="Exit threshold (default: the criterion's documented default, kl 5e-4)."
        ),
        n: Optional[int] = typer.Option(None, "--limit", help="Number of problems (default: all)."),
        split: str = typer.Option("test", "--split"),
        template: str = typer.Option("raw", "--template"),
        max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
        batch_size: int = typer.Option(8, "--batch-size"),
        init_scale: float = typer.Option(0.0, "--init-scale", help="Initial-state scale (0 = zero state)."),
        warm_start: bool = typer.Option(False, "--warm-start", help="Continuous CoT: s0 = previous token's state."),
        cache_slots: Optional[int] = typer.Option(None, "--cache-slots", help="Keep N KV slots per core layer."),
        model_dtype: str = typer.Option("fp32", "--dtype", callback=dtype_option, help="Model weights dtype."),
        device: str = typer.Option("cpu", "--device", callback=device_option),
    ) -> None:
        """Accuracy at each r, and with --exit adaptive per-token exit (iterations used per token)."""
        from reasonlens.models.builtin import default_dataset
        from reasonlens.recurrent.depth import DepthSpec, format_depth_table, parse_steps, run_depth

        dataset = default_dataset(model, dataset)

        spec = DepthSpec(
            model=model,
            dataset=dataset,
            out=out,
            steps=parse_steps(steps),
            exit_criterion=exit_criterion,
            threshold=threshold,
            split=split,
            n=n,
            template=template,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            init_scale=init_scale,
            warm_start=warm_start,
            cache_slots=cache_slots,
            model_dtype=model_dtype,
            device=device,
        )
        summary = run_depth(spec)
        for setting, accuracy, iterations in format_depth_table(summary):
            typer.echo(f"{setting:40s} accuracy {accuracy}  iterations/token {iterations}")
        adaptive = summary.get("adaptive")
        if adaptive and adaptive.get("iterations_saved_vs_fixed_rmax") is not None:
            typer.echo(
                f"adaptive exit saves {100 * adaptive['iterations_saved_vs_fixed_rmax']:.1f}% of core "
                f"iterations vs r={adaptive['max_steps']}, accuracy change "
                f"{100 * adaptive['accuracy_change_vs_fixed_rmax']:+.1f} points"
            )
        correlation = (adaptive or {}).get("level_iteration_correlation")
        if correlation:
            for measure in ("mean_iterations", "max_iterations"):
                rho = correlation[measure]["rho"]
                typer.echo(
                    f"level vs {measure.replace('_', ' ')} per item (Spearman, n={correlation['n']}): "
                    f"rho {rho if rho is None else f'{rho:+.3f}'}, p {correlation[measure]['p_value']}"
                )
        typer.echo(f"summary: {out / 'summary.json'}")

    @app.command("latent")
    def latent_command(
        source: Optional[str] = typer.Argument(
            None, help="A run directory (from `generate` with a recurrent model), or a model as --model gives it."
        ),
        model: Optional[str] = typer.Option(
            None, "--model", "-m", help="Recurrent-depth model (directory or built-in name), as in `depth --model`."
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Output directory for PNGs, parquet and summary.json."),
        text: Optional[list[str]] = typer.Option(None, "--text", help="Text to analyse (repeatable; with a model)."),
        dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Analyse question + solution texts."),
        split: str = typer.Option("test", "--split"),
        n: int = typer.Option(4, "--limit", help="Samples to analyse."),
        max_steps: int = typer.Option(32, "--max-steps", help="Iterations shown."),
        star_steps: int = typer.Option(64, "--star-steps", help="s* = state after this many iterations."),
        max_tokens: int = typer.Option(64, "--last-tokens", help="Analyse the last this-many tokens of each text."),
        init_scale: float = typer.Option(0.0, "--init-scale"),
        no_mi: bool = typer.Option(False, "--no-mi", help="Skip MI in depth."),
        device: str = typer.Option("cpu", "--device", callback=device_option),
    ) -> None:
        """Convergence heatmaps, PCA trajectories, fixed-point/orbit/slider labels and MI in depth."""
        from reasonlens.errors import UserError
        from reasonlens.models import load
        from reasonlens.recurrent.latent import LatentConfig, analyze_latents, items_from_source

        if (source is None) == (model is None):
            raise UserError("latent: give a run directory or --model MODEL (one of them)")
        model_spec, items = items_from_source(source or model, texts=text, dataset=dataset, split=split, n=n)
        config = LatentConfig(
            max_steps=max_steps, star_steps=star_steps, max_tokens=max_tokens, init_scale=init_scale, mi=not no_mi
        )
        config.validate()
        lm = load(model_spec, device=device)
        summary = analyze_latents(lm, items, out, config)
        counts = ", ".join(f"{k} {v}" for k, v in summary["label_counts"].items())
        typer.echo(f"{summary['n_tokens']} tokens in {summary['n_samples']} samples: {counts}")
        typer.echo(f"output: {out}")
