"""Model organisms: tiny models trained by reasonlens on synthetic reasoning tasks, shipped in this package.

Each shipped organism is a Hugging Face directory ``reasonlens/organisms/<name>/`` (config, safetensors weights,
tokenizer, ``README.md`` and ``card.json``). ``card.json`` records the dataset the organism was trained and
evaluated on; ``organism_dataset(name)`` returns it so commands can default to that dataset's test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ORGANISMS_DIR = Path(__file__).resolve().parent
ORGANISM_NAMES = (
    "organism-cot",
    "organism-direct",
    "organism-recurrent",
    "organism-reasoner",
    "organism-reasoner-direct",
    "organism-reasoner-noreflect",
)


def organism_dir(name: str) -> Path:
    """Directory of a shipped organism (it may not exist if the organism has not been trained yet)."""
    return ORGANISMS_DIR / name


# Fields of card.json that reasonlens reads ('?': may be missing or null).
CARD_FIELDS = {"dataset?": "str", "eval_dataset?": "str"}


def read_card(directory: str | Path) -> dict[str, Any] | None:
    """The validated ``card.json`` of a model directory, or None when it has none (the one card reader)."""
    import os

    from reasonlens.runs.io import check_fields, read_json_object

    path = Path(directory) / "card.json"
    if not os.path.lexists(path):
        return None
    return check_fields(read_json_object(path, "organism card"), str(path), CARD_FIELDS)


def organism_card(name: str) -> dict[str, Any] | None:
    """The organism's ``card.json`` as a dict, or None when it is not shipped."""
    return read_card(organism_dir(name))


def organism_dataset(name: str) -> str | None:
    """Dataset name (with levels) the organism is evaluated on, from its card; None if unknown."""
    card = organism_card(name) or {}
    dataset = card.get("eval_dataset") or card.get("dataset")
    return str(dataset) if dataset else None


__all__ = ["ORGANISMS_DIR", "ORGANISM_NAMES", "organism_dir", "organism_card", "organism_dataset", "read_card"]
