"""The registry of evaluation methods: one `Method` object per intervention, registered by name.

A method owns everything about itself: a typed options dataclass, `resolve` (fix every choice - words, layer,
ids - into the JSON-able identity of the run, plus provenance and warnings), `build` (the decode-loop
plug-ins), a short label for the report and the engines it runs on. `evaluate`, the CLI (`--set key=value`),
the engine check and the report read the registry; none of them names a method. A new method is one file under
`interventions/methods/` with a `@register_method("name")` class and one import line in
`interventions/methods/__init__.py`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from reasonlens.errors import UserError


def cli_flag(default: Any, flag: str, help: str, parse: Callable[[str], Any] | None = None) -> Any:
    """A dataclass field that `reasonlens eval` offers as the option `flag` (`cli_options.dataclass_options`):
    typed by the field's annotation, or given as text and converted by `parse` (e.g. comma-separated lists)."""
    return field(default=default, metadata={"flag": flag, "help": help, "parse": parse})


@dataclass
class ResolvedMethod:
    identity: dict[str, Any]  # the run's `method` field
    provenance: dict[str, Any]  # recorded in the manifest, not part of the identity
    warnings: list[str]
    token_ids: list = field(default_factory=list)  # WordTokenId of every banned/trigger id (suppress, rr, ...)
    notes: list[str] = field(default_factory=list)  # what the run decided (printed, not warnings)


@dataclass
class NoOptions:
    """A method without options."""


class Method:
    """Base class of a registered intervention (subclass it and decorate with `register_method`)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options_type: ClassVar[type] = NoOptions  # a dataclass; `--set key=value` is typed by its fields
    engines: ClassVar[tuple[str, ...]] = ("hf",)  # engines that can run it (vllm: generation-only methods)
    budgeted: ClassVar[bool] = False  # evaluated over a list of token budgets (one sub-run per budget)
    token_action: ClassVar[str] = "suppressing"  # console word for the token ids it acts on

    def resolve(self, lm, options: Any, dataset: str, split: str) -> ResolvedMethod:
        """Fix every choice so the result is the run's identity (a resumed run with other choices is refused)."""
        return ResolvedMethod({"name": self.name}, {}, [])

    def build(self, lm, identity: dict[str, Any], budget: int | None = None) -> list:
        """The decode-loop plug-ins for a resolved identity (`budget` for budgeted methods)."""
        raise NotImplementedError

    def label(self, identity: dict[str, Any]) -> str:
        """A short human name of the setting, e.g. `suppress (random, k=8)`."""
        details = self.label_details(identity)
        return f"{self.name} ({', '.join(details)})" if details else self.name

    def label_details(self, identity: dict[str, Any]) -> list[str]:
        return []

    def options(self, common: Any = None, settings: dict[str, str] | None = None) -> Any:
        """This method's typed options: the fields of `common` (the CLI's shared options, e.g. `MethodOptions`)
        that its dataclass has and that are not left at `common`'s own defaults, overridden by `settings`
        (`--set key=value`, parsed by the field types; the way to set a shared option to its shared default)."""
        hints = typing.get_type_hints(self.options_type)
        names = [f.name for f in dataclasses.fields(self.options_type)]
        values: dict[str, Any] = {}
        if common is not None:
            defaults = _defaults(common)
            # A shared flag left at its own default leaves the method's default (which may differ) in place.
            values = {
                name: getattr(common, name)
                for name in names
                if hasattr(common, name) and not (name in defaults and getattr(common, name) == defaults[name])
            }
        for key, text in (settings or {}).items():
            name = key.replace("-", "_")
            if name not in names:
                choices = ", ".join(names) or "none"
                raise UserError(f"--set {key}: method '{self.name}' has no option '{key}' (its options: {choices})")
            values[name] = parse_value(text, hints[name], f"--set {key}")
        return self.options_type(**values)


def _defaults(options: Any) -> dict[str, Any]:
    """The default of every field of a dataclass instance (none for other objects)."""
    if not dataclasses.is_dataclass(options):
        return {}
    out = {}
    for f in dataclasses.fields(options):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


_METHODS: dict[str, Method] = {}


def register_method(name: str, description: str = ""):
    """Class decorator: `@register_method("nowait")` registers one instance under `name`."""

    def decorate(cls: type[Method]) -> type[Method]:
        if name in _METHODS:
            raise ValueError(f"method '{name}' is registered twice")
        cls.name = name
        if description:
            cls.description = description
        _METHODS[name] = cls()
        return cls

    return decorate


def method_names() -> list[str]:
    return list(_METHODS)


def get_method(name: str) -> Method:
    try:
        return _METHODS[name]
    except KeyError:
        raise UserError(f"unknown --method '{name}' (choose from {', '.join(_METHODS)})") from None


def parse_settings(items: list[str] | None) -> dict[str, str]:
    """`["p=0.5", "words=Wait,Hmm"]` -> {"p": "0.5", "words": "Wait,Hmm"} (values parsed later, by type)."""
    settings: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        settings[key.strip()] = value.strip()
    return settings


def parse_value(text: str, kind: Any, where: str) -> Any:
    """`text` as a value of the annotated type `kind` (int, float, bool, str, Path, list[...], X | None)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, getattr(types, "UnionType", typing.Union)) and type(None) in args:
        if text.lower() in ("", "none"):
            return None
        kind = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (list, tuple):
        item = args[0] if args else str
        values = [parse_value(part.strip(), item, where) for part in text.split(",") if part.strip()]
        return values if origin is list else tuple(values)
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind in (int, float, str, Path):
            return kind(text)
    except ValueError:
        raise UserError(f"{where}: {text!r} is not a valid {getattr(kind, '__name__', kind)}") from None
    raise UserError(f"{where}: options of type {kind} cannot be set from the command line")


def build_plugins(lm, method: dict[str, Any], budget: int | None = None) -> list:
    """The plug-ins for a resolved method dict ({"name": ..., options...}); `budget` for budgeted methods."""
    info = get_method(method["name"])
    if info.budgeted and budget is None:
        raise UserError(f"--method {info.name} needs --budgets")
    return info.build(lm, method, budget)
