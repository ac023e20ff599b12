"""Datasets and prompts: registered math sets, local files, hub ids, synthetic generators."""

# Importing a dataset module registers its datasets: this line is their registration.
from reasonlens.data import synthetic, wordproblems  # noqa: F401
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
