"""Recognise and load huginn-format directories (no trust_remote_code needed)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from reasonlens.recurrent.config import HUGINN_ARCHITECTURE, HUGINN_MODEL_TYPE
from reasonlens.recurrent.model import RecurrentDepthLM


def is_recurrent_dir(path: str | Path) -> bool:
    """True when `path` is a directory whose config.json declares the huginn / raven recurrent-depth architecture."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        return False
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(config, dict):
        return False
    architectures = config.get("architectures") or []
    return config.get("model_type") == HUGINN_MODEL_TYPE or HUGINN_ARCHITECTURE in architectures


def load_recurrent(path: str | Path, dtype: torch.dtype | str | None = "fp32",
                   device: str | torch.device = "cpu") -> RecurrentDepthLM:
    """Load the model of a huginn-format directory (config.json + safetensors) in eval mode."""
    return RecurrentDepthLM.from_pretrained(path, dtype=dtype, device=device)
