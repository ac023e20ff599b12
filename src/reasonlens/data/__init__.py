"""Datasets and prompts: registered math sets, local files, hub ids, synthetic generators."""

from reasonlens.data.records import Problem
from reasonlens.data.registry import (
    DatasetInfo,
    dataset_info,
    grader_kind,
    load_file,
    load_problems,
    register_dataset,
    registered_datasets,
)
from reasonlens.data.templates import TEMPLATES, render_prompt


def _register_synthetic() -> None:
    try:
        from reasonlens.data import synthetic
    except ImportError:  # the synthetic generators are optional until they land
        return
    register = getattr(synthetic, "register", None)
    if register is not None:
        register()


_register_synthetic()

from reasonlens.data import wordproblems as _wordproblems  # noqa: E402  (registers word-arith)

_wordproblems.register()

__all__ = [
    "Problem",
    "DatasetInfo",
    "dataset_info",
    "grader_kind",
    "load_file",
    "load_problems",
    "register_dataset",
    "registered_datasets",
    "TEMPLATES",
    "render_prompt",
]
