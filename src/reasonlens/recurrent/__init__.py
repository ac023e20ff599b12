"""Recurrent-depth (Huginn-style) language models: model, cache, exit criteria, training, latent analysis."""

from reasonlens.recurrent.cache import RecurrentCache
from reasonlens.recurrent.config import RecurrentDepthConfig
from reasonlens.recurrent.exit import CRITERIA, DEFAULT_THRESHOLDS, ExitCriterion, make_criterion, register_criterion
from reasonlens.recurrent.loading import is_recurrent_dir, load_recurrent
from reasonlens.recurrent.model import RecurrentDepthLM, RecurrentOutput

__all__ = [
    "CRITERIA", "DEFAULT_THRESHOLDS", "ExitCriterion", "RecurrentCache", "RecurrentDepthConfig", "RecurrentDepthLM",
    "RecurrentOutput", "is_recurrent_dir", "load_recurrent", "make_criterion", "register_criterion",
]
