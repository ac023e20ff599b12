"""Recurrent-depth (Huginn-style) and looped (Ouro) language models: models, cache, exit criteria, training,
latent analysis."""

from reasonlens.recurrent.cache import RecurrentCache
from reasonlens.recurrent.config import RecurrentDepthConfig
from reasonlens.recurrent.exit import CRITERIA, DEFAULT_THRESHOLDS, ExitCriterion, make_criterion, register_criterion
from reasonlens.recurrent.loading import is_recurrent_dir, load_recurrent
from reasonlens.recurrent.model import RecurrentDepthLM, RecurrentOutput
from reasonlens.recurrent.ouro import OuroConfig, OuroLM

__all__ = [
    "CRITERIA",
    "DEFAULT_THRESHOLDS",
    "ExitCriterion",
    "OuroConfig",
    "OuroLM",
    "RecurrentCache",
    "RecurrentDepthConfig",
    "RecurrentDepthLM",
    "RecurrentOutput",
    "is_recurrent_dir",
    "load_recurrent",
    "make_criterion",
    "register_criterion",
]
