"""Recipes: the shipped organisms' training presets and the demo's plan, kept as data
(``reasonlens/recipes/<name>.json``).

A recipe is a JSON object with ``kind`` (who reads it: the trainer of ``llama-organism`` or ``recurrent-organism``,
or ``demo``, ``reasonlens demo``), ``name`` (= the file's stem) and the reader's own fields; keys starting with
``_`` are comments. The readers check their fields and name the file in every error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
RECIPE_KINDS = ("llama-organism", "recurrent-organism", "demo")  # demo: the plan of `reasonlens demo`


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str
    path: Path
    fields: dict[str, Any]  # everything but kind, name and comments

    def section(self, key: str) -> dict[str, Any]:
        value = self.fields.get(key, {})
        if not isinstance(value, dict):
            raise UserError(f"{self.path}: '{key}' must be a JSON object")
        return value


def recipe_names(kind: str | None = None) -> list[str]:
    """Names of the shipped recipes (of one kind, if given)."""
    names = sorted(path.stem for path in RECIPES_DIR.glob("*.json"))
    return [name for name in names if kind is None or load_recipe(name).kind == kind]


def read_recipe(path: Path) -> Recipe:
    """Parse and check one recipe file."""
    from reasonlens.runs.io import read_json_object

    data = read_json_object(path, "recipe")
    kind, name = data.get("kind"), data.get("name")
    if kind not in RECIPE_KINDS:
        raise UserError(f"{path}: 'kind' must be one of {', '.join(RECIPE_KINDS)}, got {kind!r}")
    if not isinstance(name, str) or not name:
        raise UserError(f"{path}: 'name' must be a non-empty string")
    fields = {k: v for k, v in data.items() if k not in ("kind", "name") and not k.startswith("_")}
    return Recipe(name=name, kind=kind, path=path, fields=fields)


def load_recipe(name: str) -> Recipe:
    """The shipped recipe ``name``; UserError listing the known names otherwise."""
    path = RECIPES_DIR / f"{name}.json"
    if "/" in name or not path.is_file():
        known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.json")))
        raise UserError(f"recipe: unknown name {name!r} (known: {known})")
    recipe = read_recipe(path)
    if recipe.name != name:
        raise UserError(f"{path}: 'name' is {recipe.name!r}, the file says {name!r}")
    return recipe
