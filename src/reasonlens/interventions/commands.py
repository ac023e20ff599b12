"""CLI commands `eval` and `compare-eval` (argument parsing only; the work is in evaluate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from reasonlens.cli_options import (
    dataclass_from_options,
    device_option,
    dtype_option,
    sampling_kwargs,
    state_dtype_option,
    with_dataclass_options,
)


def register(app: typer.Typer) -> None:
    from reasonlens.interventions.evaluate import MethodOptions
    from reasonlens.interventions.registry import method_names

    @app.command("eval")
    @with_dataclass_options(MethodOptions, before="engine")
    def eval_command(
        model: str = typer.Option(..., "--model", "-m", help="Built-in name, model directory, .gguf or hub id."),
        dataset: Optional[str] = typer.Option(
            None,
            "--dataset",
            "-d",
            help="gsm8k, math500, synthetic-arith, a file, ... (default for a model organism: its held-out test set).",
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Run directory (re-running resumes it)."),
        method: str = typer.Option(
            "baseline",
            "--method",
            help=f"A registered method: {' | '.join(method_names())}.",
        ),
        n: Optional[int] = typer.Option(None, "--limit", help="Number of problems (default: all)."),
        offset: int = typer.Option(0, "--offset"),
        split: str = typer.Option("test", "--split"),
        template: str = typer.Option(
            "raw", "--template", help="raw | deepseek-math | chat | few-shot | chat-few-shot."
        ),
        system: Optional[str] = typer.Option(None, "--system"),
        max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Token budget (plain methods)."),
        batch_size: int = typer.Option(8, "--batch-size"),
        model_dtype: str = typer.Option(
            "fp32", "--dtype", callback=dtype_option, help="Model weights dtype: fp32 | fp16 | bf16."
        ),
        device: str = typer.Option("cpu", "--device", callback=device_option, help="cpu, cuda, cuda:1, mps, auto."),
        stop: Optional[list[str]] = typer.Option(None, "--stop", help="Stop string (repeatable)."),
        trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
        revision: Optional[str] = typer.Option(None, "--revision", help="Hub ids: branch, tag or commit."),
        seed: int = typer.Option(0, "--seed", help="Sampling seed, random control draw and RR recycling draws."),
        temperature: float = typer.Option(
            0.0, "--temperature", help="Sampling temperature; 0 decodes greedily (DeepSeek-R1 recommends 0.6)."
        ),
        top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass (with --temperature > 0)."),
        samples: int = typer.Option(
            1,
            "--samples",
            help="Samples per problem (needs --temperature > 0): pass@k, "
            "maj@k and the mean accuracy with a CI over problems.",
        ),
        layers: Optional[str] = typer.Option(
            None,
            "--layers",
            help="Capture hidden states under the intervention (as for generate: 10,20 | 10-20 | all | embed | final).",
        ),
        state_dtype: str = typer.Option(
            "fp32", "--state-dtype", callback=state_dtype_option, help="Storage dtype of captured states."
        ),
        engine: str = typer.Option("hf", "--engine", help="hf | vllm (baseline, suppress, ttts, budget-force)."),
        executor: str = typer.Option("local", "--executor", help="local | ray (shard over Ray workers)."),
        workers: Optional[int] = typer.Option(None, "--workers", help="Ray workers (default: one per GPU or CPU)."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster."),
        tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="vllm: GPUs per replica."),
        settings: Optional[list[str]] = typer.Option(
            None,
            "--set",
            help="KEY=VALUE: any option of the method's "
            "options dataclass, typed by it (repeatable), e.g. "
            "--set p=0.5, --set words=Wait,Hmm.",
        ),
        **method_options: Any,
    ) -> None:
        """Evaluate a decoding method (resumable); prints accuracy (per budget for budget methods)."""
        from reasonlens.cli import echo_multi_sample, parse_stop
        from reasonlens.data import adds_special_tokens
        from reasonlens.decode import DecodeConfig
        from reasonlens.interventions.evaluate import EvalSpec, evaluate
        from reasonlens.interventions.registry import parse_settings
        from reasonlens.models.builtin import default_dataset

        dataset = default_dataset(model, dataset)
        from reasonlens.engines import EngineSpec, check_engine_support
        from reasonlens.runs import RunSpec
        from reasonlens.runs.executors import make_executor

        check_engine_support(engine, method, command="eval")
        options = dataclass_from_options(MethodOptions, method_options, seed=seed, settings=parse_settings(settings))
        decode = DecodeConfig(
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            stop_strings=parse_stop(stop),
            add_special_tokens=adds_special_tokens(template),
            **sampling_kwargs(temperature, top_p, seed),
        )
        run = RunSpec(
            out=out,
            model=model,
            dataset=dataset,
            split=split,
            n=n,
            offset=offset,
            template=template,
            system=system,
            decode=decode,
            model_dtype=model_dtype,
            device=device,
            trust_remote_code=trust_remote_code,
            revision=revision,
            samples=samples,
            layers=None if layers is None or layers.strip().lower() == "none" else layers,
            dtype=state_dtype,
        )
        spec = EvalSpec(run, method, options)
        with make_executor(executor, workers, ray_address, EngineSpec(engine, tensor_parallel_size)) as runner:
            summary = evaluate(spec, executor=runner)
        if "accuracy_by_budget" in summary:
            for budget, acc in summary["accuracy_by_budget"].items():
                lo, hi = summary["accuracy_ci95_by_budget"][budget]
                typer.echo(
                    f"budget {budget}: accuracy {acc:.3f} 95% CI [{lo:.3f}, {hi:.3f}], mean "
                    f"{summary['mean_tokens_by_budget'][budget]:.1f} tokens"
                )
        else:
            typer.echo(
                f"accuracy {summary['accuracy']:.3f} ({summary['n_correct']}/{summary['n_graded']}) "
                f"95% CI [{summary['accuracy_ci95'][0]:.3f}, {summary['accuracy_ci95'][1]:.3f}]"
            )
            typer.echo(f"mean completion length {summary['mean_tokens']:.1f} tokens")
            echo_multi_sample(summary)
        typer.echo(f"run: {out}")

    @app.command("compare-eval")
    def compare_eval_command(
        runs: list[Path] = typer.Argument(..., help="Run directories; the first is the reference."),
        n_boot: int = typer.Option(2000, "--n-boot", help="Bootstrap resamples."),
        seed: int = typer.Option(0, "--seed"),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the comparison as JSON here."),
    ) -> None:
        """Accuracy of each run and paired bootstrap 95% CIs of the difference to the first run."""
        from reasonlens.interventions.evaluate import compare_runs, print_comparison, write_json

        report = compare_runs(runs, n_boot=n_boot, seed=seed)
        print_comparison(report)
        if json_out is not None:
            write_json(json_out, report)
