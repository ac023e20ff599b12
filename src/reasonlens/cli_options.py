"""The CLI's naming scheme: shared option callbacks and the table of renamed options (docs/cli.md).

Renamed options keep working for one release as hidden aliases: `main` rewrites them to the new name
before parsing and prints one note per renamed option on stderr.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import typing
from typing import Any, Callable, Optional, Sequence

from reasonlens.errors import UserError

# command path -> {old option name: new option name}; old names are accepted (with a note) until 0.3
RENAMED: dict[tuple[str, ...], dict[str, str]] = {
    ("generate",): {"--n": "--limit", "--model-dtype": "--dtype"},
    ("eval",): {"--n": "--limit", "--model-dtype": "--dtype", "--k": "--top-words", "--layer": "--rr-layer"},
    ("depth",): {"--n": "--limit", "--model-dtype": "--dtype", "--steps": "--recurrence"},
    ("latent",): {"--n": "--limit", "--max-tokens": "--last-tokens"},
    ("mi",): {"--k": "--num-peaks"},
    ("tokens",): {"--top": "--top-words", "--layer": "--token-layer"},
    ("train-recurrent",): {"--steps": "--max-steps"},
    ("organisms", "train"): {"--steps": "--max-steps"},
}
# spellings accepted everywhere, silently (lm-eval's names)
ALIASES: dict[str, str] = {"--output-path": "--out"}
_GROUPS = {"organisms"}


def command_path(argv: Sequence[str]) -> tuple[str, ...]:
    """The subcommand names at the start of `argv` (`('organisms', 'train')`, `('eval',)`)."""
    path: list[str] = []
    for token in argv:
        if token.startswith("-"):
            break
        path.append(token)
        if path[0] not in _GROUPS or len(path) == 2:
            break
    return tuple(path)


def rewrite_renamed(argv: Sequence[str], warn=None) -> list[str]:
    """`argv` with renamed options replaced by their new names (a note on stderr for each)."""
    path = command_path(argv)
    renamed = {**RENAMED.get(path, {})}
    _refuse_old_and_new(path, argv, renamed)
    out: list[str] = []
    noted: set[str] = set()
    for position, token in enumerate(argv):
        if token == "--":
            out.extend(argv[position:])
            break
        name, eq, value = token.partition("=")
        new = ALIASES.get(name) or renamed.get(name)
        if position < len(path) or new is None:
            out.append(token)
            continue
        if name in renamed and name not in noted:
            noted.add(name)
            message = f"note: {' '.join(path)} {name} is now {new} (the old name goes in 0.3)"
            (warn or (lambda m: print(m, file=sys.stderr)))(message)
        out.append(new + eq + value)
    return out


def _refuse_old_and_new(path: tuple[str, ...], argv: Sequence[str], renamed: dict[str, str]) -> None:
    """An old name given with its new one would silently keep only the last value (an old script's
    `generate --dtype fp16 --model-dtype bf16` meant fp16 states, and would get fp32)."""
    given = {token.partition("=")[0] for token in argv[len(path) :] if token.startswith("-")}
    for old, new in renamed.items():
        if old in given and new in given:
            hint = "; the stored states' dtype is --state-dtype" if new == "--dtype" and "generate" in path else ""
            raise UserError(f"{' '.join(path)}: {old} is the old name of {new}; give {new} once{hint}")


def device_option(value: Optional[str]) -> Optional[str]:
    """typer callback of every --device: checked before any work starts (one-line error, exit 2)."""
    from reasonlens.models.dtypes import check_device

    return None if value is None else check_device(value)


def dtype_option(value: Optional[str]) -> Optional[str]:
    """typer callback of every --dtype (model weights): any spelling in the one table -> its short name."""
    from reasonlens.models.dtypes import canonical_dtype

    return None if value is None else canonical_dtype(value, "--dtype")


def state_dtype_option(value: Optional[str]) -> Optional[str]:
    from reasonlens.models.dtypes import canonical_dtype

    return None if value is None else canonical_dtype(value, "--state-dtype")


def sampling_kwargs(temperature: float, top_p: float, seed: int, sample_flag: bool = False) -> dict:
    """DecodeConfig fields for the sampling options: temperature 0 is greedy (vLLM's and lm-eval's convention);
    the hidden old flag --sample means temperature 1 unless one is given."""
    from reasonlens.runs.runner import MAX_SEED

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed must be an integer in 0..{MAX_SEED}, got {seed}")  # also when greedy: never ignored
    if temperature < 0:
        raise UserError(f"--temperature must be >= 0 (0: greedy), got {temperature}")
    if sample_flag and temperature == 0:
        temperature = 1.0
    if temperature == 0:  # greedy: temperature and seed keep their defaults (the run identity of older runs)
        return {"do_sample": False, "top_p": top_p}
    return {"do_sample": True, "temperature": temperature, "top_p": top_p, "seed": seed}


def dataclass_options(cls: type) -> list[inspect.Parameter]:
    """One typer option per field of the dataclass `cls` that carries `cli_flag` metadata (flag name, help):
    typed by the field's annotation with its default, or as text (default: not given) when it has a `parse`."""
    import typer

    hints = typing.get_type_hints(cls)
    params = []
    for f in dataclasses.fields(cls):
        if "flag" not in f.metadata:
            continue
        parsed = f.metadata.get("parse") is not None
        annotation = Optional[str] if parsed else hints[f.name]
        default = None if parsed else f.default
        option = typer.Option(default, f.metadata["flag"], help=f.metadata["help"])
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return params


def dataclass_from_options(cls: type, values: dict[str, Any], **fixed: Any) -> Any:
    """`cls` from the values of its generated options (`dataclass_options`): text options are converted by
    their field's `parse` (not given or empty: the field's default); `fixed` sets the fields without a flag."""
    kwargs = dict(fixed)
    for f in dataclasses.fields(cls):
        if "flag" not in f.metadata or f.name not in values:
            continue
        value, parse = values[f.name], f.metadata.get("parse")
        if parse is not None:
            if not value:  # not given, or empty text: the field's default
                continue
            value = parse(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def with_dataclass_options(cls: type, before: str) -> Callable[[Callable], Callable]:
    """Decorator of a typer command taking `**options`: adds the options of `cls` (`dataclass_options`) to its
    signature, in the help before the parameter `before`; the command receives them in `options`."""

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func)
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in signature.parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        at = next(i for i, p in enumerate(own) if p.name == before)
        generated = dataclass_options(cls)

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            return func(**kwargs)

        command.__signature__ = signature.replace(parameters=own[:at] + generated + own[at:])  # type: ignore[attr-defined]
        command.__annotations__ = {**func.__annotations__, **{p.name: p.annotation for p in generated}}
        return command

    return decorate
