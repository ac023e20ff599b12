"""Datasets and prompts: registered math sets, local files, hub ids, synthetic generators."""

from reasonlens.data import synthetic as _synthetic  # noqa: E402  (registers the synthetic-* families)
from reasonlens.data import wordproblems as _wordproblems  # noqa: E402  (registers word-arith)
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
from reasonlens.data.templates import TEMPLATES, adds_special_tokens, render_prompt

_synthetic.register()
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
    "adds_special_tokens",
    "render_prompt",
]
