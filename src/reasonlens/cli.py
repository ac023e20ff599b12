"""Command-line interface: a thin typer layer over the Python API (no logic of its own)."""

from __future__ import annotations

import errno
import importlib
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

try:  # typer >= 0.2x vendors click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exceptions

from reasonlens.cli_options import device_option, dtype_option, rewrite_renamed, sampling_kwargs, state_dtype_option
from reasonlens.errors import Interrupted, UserError

app = typer.Typer(
    name="reasonlens",
    help="Study and exploit how language models reason in latent space.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def echo_multi_sample(summary: dict) -> None:
    """pass@k / maj@k lines of a run with several samples per problem (nothing otherwise)."""
    if "pass_at_k" not in summary:
        return
    ks = list(summary["pass_at_k"])
    typer.echo(
        f"{summary['samples_per_problem']} samples x {summary['n_problems']} problems: "
        + "  ".join(f"pass@{k} {summary['pass_at_k'][k]:.3f}" for k in ks)
    )
    typer.echo("  " + "  ".join(f"maj@{k} {summary['maj_at_k'][k]:.3f}" for k in ks))


def parse_stop(stop: list[str] | None) -> tuple[str, ...]:
    from reasonlens.decode.escapes import parse_escapes

    return tuple(parse_escapes(s, "--stop") for s in (stop or []))


@app.command()
def generate(
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="Built-in name (smollm2-135m, organism-cot, tiny-llama), model directory, .gguf file or hub id.",
    ),
    dataset: Optional[str] = typer.Option(
        None,
        "--dataset",
        "-d",
        help="gsm8k, math500, aime24, aime25, "
        "synthetic-*, or a .jsonl/.csv/.parquet file (default for a model "
        "organism: its held-out test set).",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run directory (created; re-running resumes it; alias --output-path)."
    ),
    n: Optional[int] = typer.Option(None, "--limit", help="Number of problems (default: all)."),
    offset: int = typer.Option(0, "--offset", help="Skip this many problems first."),
    split: str = typer.Option("test", "--split", help="Dataset split."),
    layers: Optional[str] = typer.Option(
        None,
        "--layers",
        help="Layers to capture: indices (negative ok) and/or "
        "'final', comma-separated; 'none' captures nothing (default: -1 on the HF "
        "engine, none on vLLM).",
    ),
    template: str = typer.Option("raw", "--template", help="raw | deepseek-math | chat | few-shot | chat-few-shot."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt for --template chat."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Token budget per sample."),
    batch_size: int = typer.Option(8, "--batch-size", help="Samples decoded together."),
    model_dtype: str = typer.Option(
        "fp32",
        "--dtype",
        callback=dtype_option,
        help="Model weights dtype: fp32 | fp16 | bf16 (or float32, float16, bfloat16).",
    ),
    dtype: str = typer.Option(
        "fp32",
        "--state-dtype",
        callback=state_dtype_option,
        help="Storage dtype of the captured states: fp32 | fp16 | bf16.",
    ),
    device: str = typer.Option("cpu", "--device", callback=device_option, help="cpu, cuda, cuda:1, mps, auto."),
    temperature: float = typer.Option(
        0.0, "--temperature", help="Sampling temperature; 0 decodes greedily (DeepSeek-R1 recommends 0.6)."
    ),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass (with --temperature > 0)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (sample j of problem i uses seed + its index)."),
    samples: int = typer.Option(
        1,
        "--samples",
        help="Samples per problem (needs --temperature > 0); the summary "
        "adds pass@k, maj@k and the mean accuracy with a CI over problems.",
    ),
    sample: bool = typer.Option(False, "--sample", hidden=True, help="Old flag: sample at temperature 1."),
    schedule: str = typer.Option(
        "join",
        "--schedule",
        help="join (a finished row's slot goes to the next "
        "prompt) | static (fixed batches, each runs until its longest row ends).",
    ),
    window: int = typer.Option(
        8, "--window", help="join: prompts are decoded and resumed in windows of WINDOW x batch-size."
    ),
    stop: Optional[list[str]] = typer.Option(None, "--stop", help="Stop string (repeatable)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the model's own code to run."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub ids: branch, tag or commit of the weights."),
    engine: str = typer.Option("hf", "--engine", help="hf (every feature) | vllm (generation only, no --layers)."),
    executor: str = typer.Option("local", "--executor", help="local | ray (shard over Ray workers, one model each)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Ray workers (default: one per GPU or CPU)."),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="Join this Ray cluster ('auto', 'ray://host:10001'); default: start a local one."
    ),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="vllm: GPUs per model replica."),
) -> None:
    """Generate reasoning traces with hidden-state capture into a resumable run directory."""
    from reasonlens.data import adds_special_tokens
    from reasonlens.decode import DecodeConfig
    from reasonlens.engines import EngineSpec, check_engine_support
    from reasonlens.models.builtin import default_dataset
    from reasonlens.runs import RunSpec
    from reasonlens.runs.executors import make_executor

    dataset = default_dataset(model, dataset)
    if layers is None:
        layers = "-1" if engine == "hf" else "none"
    check_engine_support(engine, capture_layers=layers.strip().lower() != "none")

    decode = DecodeConfig(
        max_new_tokens=max_new_tokens,
        stop_strings=parse_stop(stop),
        batch_size=batch_size,
        add_special_tokens=adds_special_tokens(template),
        schedule=schedule,
        window=window,
        **sampling_kwargs(temperature, top_p, seed, sample),
    )
    spec = RunSpec(
        out=out,
        model=model,
        dataset=dataset,
        split=split,
        n=n,
        offset=offset,
        template=template,
        system=system,
        decode=decode,
        layers=None if layers.strip().lower() == "none" else layers,
        dtype=dtype,
        model_dtype=model_dtype,
        device=device,
        trust_remote_code=trust_remote_code,
        revision=revision,
        samples=samples,
    )
    with make_executor(executor, workers, ray_address, EngineSpec(engine, tensor_parallel_size)) as runner:
        summary = runner.run(spec)
    typer.echo(
        f"accuracy {summary['accuracy']:.3f} ({summary['n_correct']}/{summary['n']}) "
        f"95% CI [{summary['accuracy_ci95'][0]:.3f}, {summary['accuracy_ci95'][1]:.3f}]  "
        f"{summary['tokens_per_second']:.1f} tok/s"
    )
    echo_multi_sample(summary)
    typer.echo(f"run: {out}")


def _version_callback(value: bool) -> None:
    if value:
        import reasonlens

        typer.echo(f"reasonlens {reasonlens.__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Study and exploit how language models reason in latent space (docs/cli.md lists every option)."""


@app.command()
def doctor(json_out: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Versions, devices, caches and bundled models (paste this into bug reports)."""
    import json

    from reasonlens.doctor import diagnose, format_report

    report = diagnose()
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    for line in format_report(report):
        typer.echo(line)


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
    "reasonlens.eval.commands",
    "reasonlens.demo",
)


def _register_modules() -> None:
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(app)


_register_modules()


RESUME_HINT = "the run directory is consistent; re-run the same command to resume"
# Errors of the file system that are the environment's, not the input's: exit code 1 and the resume hint.
_RESOURCE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.ENOMEM}


def _raise_interrupted(signum: int, frame) -> None:
    raise Interrupted(signum)


def _check_argv(argv: list[str]) -> None:
    for position, arg in enumerate(argv, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(
                f"argument {position} ({arg.encode('utf-8', 'backslashreplace').decode()[:60]!r}) is not valid UTF-8"
            ) from None


def _os_error_line(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    text = str(exc).strip()
    reason = exc.strerror or (text.splitlines()[0] if text else type(exc).__name__)
    return f"{where}{reason}".replace("\n", " ")


def _run(argv: list[str] | None) -> int:
    """Run the app; returns the exit code (user errors: one line on stderr and 2, never a traceback)."""
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        _check_argv(argv)
        argv = rewrite_renamed(argv)
        code = app(args=argv, standalone_mode=False)
        return code if isinstance(code, int) else 0  # typer returns the code of an explicit typer.Exit
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except click_exceptions.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        if isinstance(exc, getattr(click_exceptions, "NoArgsIsHelpError", ())):
            typer.echo(exc.format_message(), err=True)
        else:
            typer.echo(f"error: {where}{exc.format_message()}".replace("\n", " "), err=True)
        return exc.exit_code if exc.exit_code else 2
    except typer.Exit as exc:
        return getattr(exc, "exit_code", 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        typer.echo(f"interrupted ({signal.Signals(signum).name}): {RESUME_HINT}", err=True)
        return 128 + int(signum)
    except MemoryError:
        typer.echo("error: out of memory (an input is too large for the memory this process may use)", err=True)
        return 1
    except OSError as exc:
        # pyarrow and other C++ libraries raise OSError without an errno; their message still names the cause
        text = str(exc)
        if exc.errno in _RESOURCE_ERRNOS or (exc.errno is None and ("No space left" in text or "too large" in text)):
            typer.echo(f"error: {_os_error_line(exc)}; {RESUME_HINT} once the cause is fixed", err=True)
            return 1
        typer.echo(f"error: {_os_error_line(exc)}", err=True)
        return 2


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 on success, 2 on bad input (one `error:` line naming the file, field or argument),
    1 when the environment fails (disk full, out of memory), 130 on SIGINT and 143 on SIGTERM (with the hint
    that re-running resumes)."""
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in handled}
    previous_xfsz = signal.getsignal(signal.SIGXFSZ)
    try:
        for signum in handled:
            signal.signal(signum, _raise_interrupted)
        # Past a file-size limit, write() fails with EFBIG (reported like a full disk) instead of killing us.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        code = _run(argv)
    finally:
        try:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.signal(signal.SIGXFSZ, previous_xfsz)
        except (ValueError, TypeError):
            pass
    if code:  # success returns normally, so callers (tests, scripts) can call main() in-process
        sys.exit(code)


if __name__ == "__main__":
    main()
