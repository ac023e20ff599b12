"""CLI commands of the analysis area: ``mi``, ``tokens``, ``compare`` (argument parsing only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from reasonlens.cli_options import device_option
from reasonlens.errors import UserError


def _sigma(text: str) -> float | str:
    if text.strip().lower() == "median":
        return "median"
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--sigma must be a positive number or 'median', got {text!r}") from None
    if not value > 0:
        raise UserError(f"--sigma must be a positive number or 'median', got {text!r}")
    return value


def _peak_config(mode: str, tau: float, k: int):
    """The peak settings, with errors naming the CLI options (PeakConfig's own name its fields)."""
    from reasonlens.analysis.peaks import PEAK_MODES, PeakConfig

    if mode not in PEAK_MODES:
        raise UserError(f"--peaks must be one of {', '.join(PEAK_MODES)}, got {mode!r}")
    if mode == "iqr" and not tau >= 0:
        raise UserError(f"--tau must be >= 0, got {tau}")
    if mode == "topk" and k < 1:
        raise UserError(f"--num-peaks must be >= 1, got {k}")
    return PeakConfig(mode=mode, tau=tau, k=k)


def _layers(text: Optional[str]) -> list[str] | None:
    if text is None or not text.strip():
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def empty_mi_hint(summary: dict, mode: str) -> str | None:
    """What to try next when the token layer has no peaks or no thinking tokens (None when it has both)."""
    layer = summary["token_layer"]
    n_peaks = summary["per_layer"][layer]["stats"]["n_peaks"]["mean"]
    shallower = [name for name in summary["per_layer"] if name not in (layer, "final")]
    other = f" or --token-layer {shallower[len(shallower) // 2]}" if shallower else " or capture more --layers"
    if not n_peaks:
        rule = "IQR peaks" if mode == "iqr" else "peaks"
        fix = "--peaks topk" if mode == "iqr" else "a larger --num-peaks"
        return f"no {rule} at layer {layer}; try {fix}{other}"
    if not summary["thinking_tokens"]:
        return f"no thinking tokens at layer {layer} (peak tokens hold no word); try --all-tokens{other}"
    return None


def register(app: typer.Typer) -> None:
    """Add the ``mi``, ``tokens`` and ``compare`` commands to ``app``."""

    @app.command("mi")
    def mi_command(
        run: Path = typer.Argument(..., help="Run directory written by `reasonlens generate` with --layers."),
        layers: Optional[str] = typer.Option(
            None, "--layers", help="Captured layers to analyse, comma-separated (default: all captured)."
        ),
        token_layer: Optional[str] = typer.Option(
            None,
            "--token-layer",
            help="Layer whose peaks give the thinking tokens (default: deepest captured decoder layer).",
        ),
        estimator: str = typer.Option(
            "paper_hsic",
            "--estimator",
            help="Per-trace MI estimator, by registered "
            "name (reasonlens.mi.estimators; default: the paper's HSIC score).",
        ),
        sigma: str = typer.Option("50", "--sigma", help="Kernel bandwidth of the paper score, or 'median'."),
        eps: float = typer.Option(1e-5, "--eps", help="Regulariser of the paper score."),
        peaks: str = typer.Option("iqr", "--peaks", help="iqr (paper) | topk (reference notebook)."),
        tau: float = typer.Option(1.5, "--tau", help="IQR multiplier for --peaks iqr."),
        k: int = typer.Option(20, "--num-peaks", help="Number of peaks for --peaks topk."),
        gold: str = typer.Option("solution", "--gold", help="Gold text to encode: solution (reference) | answer."),
        model: Optional[str] = typer.Option(None, "--model", help="Model spec (default: the run's model)."),
        device: str = typer.Option("cpu", "--device", callback=device_option),
        argmax: bool = typer.Option(True, "--argmax/--no-argmax", help="Decode peak states with the LM head."),
        all_tokens: bool = typer.Option(False, "--all-tokens", help="Keep non-alphabetic tokens in the token set."),
        population: bool = typer.Option(
            True, "--population/--no-population", help="Population HSIC/CKA across problems per relative-position bin."
        ),
        align: str = typer.Option(
            "relative",
            "--align",
            help="Population alignment: relative (position bins) | step (absolute step, every --stride steps).",
        ),
        bins: int = typer.Option(10, "--bins", help="Relative-position bins for the population estimates."),
        stride: int = typer.Option(32, "--stride", help="Step stride for --align step."),
        permutations: int = typer.Option(200, "--permutations", help="Permutations for population p-values (0: none)."),
        n_boot: int = typer.Option(2000, "--n-boot", help="Bootstrap resamples for CIs."),
        seed: int = typer.Option(0, "--seed"),
        plots: bool = typer.Option(True, "--plots/--no-plots"),
        limit: Optional[int] = typer.Option(None, "--limit", help="Analyse only the first N samples."),
        enrichment_words: Optional[str] = typer.Option(
            None,
            "--enrichment-words",
            help="Words whose share of peaks is compared with their base rate (default: the paper's thinking words).",
        ),
        executor: str = typer.Option("local", "--executor", help="local | ray (gold encoding on Ray workers)."),
        workers: Optional[int] = typer.Option(None, "--workers", help="Ray workers (default: one per GPU or CPU)."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster."),
    ) -> None:
        """MI trajectories, peaks, statistics, thinking tokens and plots for a run (written to RUN/mi/)."""
        from reasonlens.analysis.pipeline import GoldConfig, MIConfig, OutputConfig, analyze_run, check_analysable
        from reasonlens.analysis.stages import PopulationConfig, TraceScoring

        sigma_value, peak_config = _sigma(sigma), _peak_config(peaks, tau, k)  # parsed first, as before the sub-configs
        config = MIConfig(
            layers=_layers(layers),
            token_layer=token_layer,
            gold=GoldConfig(source=gold, model=model, device=device),
            population=PopulationConfig(
                enabled=population, align=align, n_bins=bins, stride=stride, n_permutations=permutations
            ),
            scoring=TraceScoring(estimator=estimator, sigma=sigma_value, eps=eps, peaks=peak_config),
            output=OutputConfig(
                decode_argmax=argmax,
                alphabetic_only=not all_tokens,
                plots=plots,
                enrichment_words=_layers(enrichment_words),
            ),
            n_boot=n_boot,
            seed=seed,
            limit=limit,
        )
        if executor != "local" or workers is not None or ray_address is not None:
            from reasonlens.analysis.ray_golds import prepare_golds
            from reasonlens.runs.executors import make_executor

            check_analysable(
                run, config, reuse_existing=False
            )  # all that analyze_run would refuse, before workers start
            with make_executor(executor, workers, ray_address) as runner:
                prepare_golds(run, config, runner)
        summary = analyze_run(run, config)
        layer = summary["token_layer"]
        stats = summary["per_layer"][layer]["stats"]
        auc = summary["per_layer"][layer]["cumulative_mi_vs_correct"]
        typer.echo(
            f"{summary['n']} traces, layer {layer}: mean MI {stats['mean']['mean']:.4g}, "
            f"peaks/trace {stats['n_peaks']['mean']:.2f}, peak ratio {stats['peak_ratio']['mean']:.4f}"
        )
        if auc.get("auc") is not None:
            typer.echo(f"cumulative MI vs correct: AUC {auc['auc']:.3f} [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}]")
        words = ", ".join(w["word"] for w in summary["thinking_tokens"][:10])
        if words:
            typer.echo(f"thinking tokens: {words}")
        for warning in summary.get("warnings") or []:
            typer.echo(f"warning: {warning}", err=True)
        hint = empty_mi_hint(summary, peaks)
        if hint:
            typer.echo(hint)
        enrichment = summary.get("thinking_word_enrichment") or {}
        if enrichment.get("ratio") is not None and None not in enrichment["ci95"]:
            typer.echo(
                f"peaks on thinking words: {enrichment['peak_share']:.3f} vs base rate "
                f"{enrichment['base_rate']:.3f}: enrichment {enrichment['ratio']:.2f} "
                f"[{enrichment['ci95'][0]:.2f}, {enrichment['ci95'][1]:.2f}]"
            )
        typer.echo(f"wrote {run / 'mi'}")

    @app.command("tokens")
    def tokens_command(
        run: Path = typer.Argument(..., help="Run directory (analysed with `reasonlens mi` first if needed)."),
        out: Path = typer.Option(..., "--out", "-o", help="Token-set file to write (JSON lines)."),
        layer: Optional[str] = typer.Option(
            None, "--token-layer", help="Layer whose peaks are counted (default: the one `reasonlens mi` used)."
        ),
        reading: str = typer.Option("generated", "--reading", help="generated (emitted token) | argmax (LM head)."),
        top: Optional[int] = typer.Option(None, "--top-words", help="Keep the N most frequent words."),
        all_tokens: bool = typer.Option(False, "--all-tokens", help="Keep non-alphabetic tokens."),
    ) -> None:
        """Thinking-token set of a run: words at MI peaks with every token id variant."""
        from reasonlens.analysis.pipeline import build_token_set

        words = build_token_set(run, out, layer=layer, reading=reading, alphabetic_only=not all_tokens, top=top)
        typer.echo(f"{len(words)} words -> {out}")
        for w in words[:15]:
            typer.echo(f"  {w.word!r:16} {w.frequency:6d}  ids {w.token_ids[:8]}")

    @app.command("compare")
    def compare_command(
        run_a: Path = typer.Argument(..., help="First run (e.g. the reasoning model)."),
        run_b: Path = typer.Argument(..., help="Second run (e.g. the base model) on the same problems."),
        layer_a: Optional[str] = typer.Option(None, "--layer-a", help="Layer of run A (default: deepest captured)."),
        layer_b: Optional[str] = typer.Option(None, "--layer-b", help="Layer of run B (default: deepest captured)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default RUN_A/compare/<RUN_B>)."),
        n_boot: int = typer.Option(2000, "--n-boot"),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Paper Table 2 style comparison (Mean, Std, AOM, peak ratio with 95% CIs) of two runs."""
        from reasonlens.analysis.compare import compare_runs

        summary = compare_runs(run_a, run_b, layer_a=layer_a, layer_b=layer_b, out=out, n_boot=n_boot, seed=seed)

        def fmt(e):
            return "n/a" if e["mean"] is None else f"{e['mean']:.4g} [{e['ci95'][0]:.4g}, {e['ci95'][1]:.4g}]"

        typer.echo(f"{'metric':12} {'A':34} {'B':34} A-B (paired, n={summary['n_shared']})")
        for row in summary["table"]:
            typer.echo(f"{row['metric']:12} {fmt(row['a']):34} {fmt(row['b']):34} {fmt(row['paired_diff'])}")
