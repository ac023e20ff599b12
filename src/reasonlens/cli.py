"""Command-line interface: a thin typer layer over the Python API (no logic of its own)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Optional

import typer

try:  # typer >= 0.2x vendors click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exceptions

from reasonlens.errors import UserError

app = typer.Typer(
    name="reasonlens",
    help="Study and exploit how language models reason in latent space.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def parse_stop(stop: list[str] | None) -> tuple[str, ...]:
    return tuple(s.encode("utf-8").decode("unicode_escape") for s in (stop or []))


@app.command()
def generate(
    model: str = typer.Option(..., "--model", "-m", help="Built-in name (smollm2-135m, organism-cot, tiny-llama), "
                              "model directory, .gguf file or hub id."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="gsm8k, math500, aime24, aime25, "
                                          "synthetic-*, or a .jsonl/.csv/.parquet file (default for a model "
                                          "organism: its held-out test set)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (created; re-running resumes it)."),
    n: Optional[int] = typer.Option(None, "--n", help="Number of problems (default: all)."),
    offset: int = typer.Option(0, "--offset", help="Skip this many problems first."),
    split: str = typer.Option("test", "--split", help="Dataset split."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Layers to capture: indices (negative ok) and/or "
                                         "'final', comma-separated; 'none' captures nothing (default: -1 on the HF "
                                         "engine, none on vLLM)."),
    template: str = typer.Option("raw", "--template", help="raw | deepseek-math | chat."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt for --template chat."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Token budget per sample."),
    batch_size: int = typer.Option(8, "--batch-size", help="Samples decoded together."),
    schedule: str = typer.Option("join", "--schedule", help="join (a finished row's slot goes to the next "
                                 "prompt) | static (fixed batches, each runs until its longest row ends)."),
    window: int = typer.Option(8, "--window", help="join: prompts are decoded and resumed in windows of "
                               "WINDOW x batch-size."),
    dtype: str = typer.Option("fp32", "--dtype", help="Storage dtype of captured states: fp32 | fp16 | bf16."),
    model_dtype: str = typer.Option("fp32", "--model-dtype", help="Model weights dtype: fp32 | fp16 | bf16."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ..."),
    sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding."),
    temperature: float = typer.Option(1.0, "--temperature"),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: int = typer.Option(0, "--seed"),
    stop: Optional[list[str]] = typer.Option(None, "--stop", help="Stop string (repeatable)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the model's own code to run."),
    engine: str = typer.Option("hf", "--engine", help="hf (every feature) | vllm (generation only, no --layers)."),
    executor: str = typer.Option("local", "--executor", help="local | ray (shard over Ray workers, one model each)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Ray workers (default: one per GPU or CPU)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster ('auto', "
                                              "'ray://host:10001'); default: start a local one."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="vllm: GPUs per model replica."),
) -> None:
    """Generate reasoning traces with hidden-state capture into a resumable run directory."""
    from reasonlens.decode import DecodeConfig
    from reasonlens.engines import EngineSpec, check_engine_support
    from reasonlens.models.builtin import default_dataset
    from reasonlens.runs import RunSpec
    from reasonlens.runs.executors import make_executor

    dataset = default_dataset(model, dataset)
    if layers is None:
        layers = "-1" if engine == "hf" else "none"
    check_engine_support(engine, capture_layers=layers.strip().lower() != "none")

    decode = DecodeConfig(max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature, top_p=top_p,
                          seed=seed, stop_strings=parse_stop(stop), batch_size=batch_size,
                          add_special_tokens=template != "chat", schedule=schedule, window=window)
    spec = RunSpec(out=out, model=model, dataset=dataset, split=split, n=n, offset=offset, template=template,
                   system=system, decode=decode, layers=None if layers.strip().lower() == "none" else layers,
                   dtype=dtype, model_dtype=model_dtype, device=device, trust_remote_code=trust_remote_code)
    with make_executor(executor, workers, ray_address, EngineSpec(engine, tensor_parallel_size)) as runner:
        summary = runner.run(spec)
    typer.echo(f"accuracy {summary['accuracy']:.3f} ({summary['n_correct']}/{summary['n']}) "
               f"95% CI [{summary['accuracy_ci95'][0]:.3f}, {summary['accuracy_ci95'][1]:.3f}]  "
               f"{summary['tokens_per_second']:.1f} tok/s")
    typer.echo(f"run: {out}")


@app.command()
def datasets() -> None:
    """List the registered datasets."""
    from reasonlens.data import registered_datasets

    for name, info in sorted(registered_datasets().items()):
        typer.echo(f"{name:20s} grader={info.grader:8s} splits={','.join(info.splits):12s} {info.description}")


@app.command()
def models() -> None:
    """List the built-in model names."""
    from reasonlens.models import builtin_names

    for name in builtin_names() + ["tiny-llama", "tiny-qwen2", "tiny-gpt2"]:
        typer.echo(name)


# Commands contributed by the pipeline's other modules; each module exposes register(app).
_COMMAND_MODULES = (
    "reasonlens.analysis.commands",
    "reasonlens.recurrent.commands",
    "reasonlens.organisms.commands",
    "reasonlens.interventions.commands",
    "reasonlens.report.commands",
    "reasonlens.demo",
)


def _register_modules() -> None:
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that part of the toolkit is not installed in this build
            raise
        module.register(app)


_register_modules()


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app(args=argv, standalone_mode=False)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click_exceptions.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        if isinstance(exc, getattr(click_exceptions, "NoArgsIsHelpError", ())):
            typer.echo(exc.format_message(), err=True)
        else:
            typer.echo(f"error: {where}{exc.format_message()}".replace("\n", " "), err=True)
        sys.exit(exc.exit_code if exc.exit_code else 2)
    except typer.Exit as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted: the run directory is consistent; re-run the same command to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
