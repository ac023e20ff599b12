"""The one trainer of reasonlens: optimizer, schedule, loop, checkpoints and resume (``loop``, ``checkpoint``),
and the recipes it is run with (``recipes``: the shipped organisms' presets, as JSON data).

Every organism trains through :func:`train_loop`: the LLaMA organisms (:mod:`reasonlens.organisms.train`) and
the recurrent-depth ones (:mod:`reasonlens.recurrent.train`, also behind ``reasonlens train-recurrent``).
"""

from reasonlens.train.checkpoint import load_checkpoint, save_checkpoint
from reasonlens.train.loop import (
    LoopOptions,
    LoopResult,
    OptimConfig,
    learning_rate,
    lr_factor,
    make_optimizer,
    train_loop,
)
from reasonlens.train.recipes import RECIPE_KINDS, RECIPES_DIR, Recipe, load_recipe, read_recipe, recipe_names

__all__ = [
    "LoopOptions",
    "LoopResult",
    "OptimConfig",
    "RECIPES_DIR",
    "RECIPE_KINDS",
    "Recipe",
    "learning_rate",
    "load_checkpoint",
    "load_recipe",
    "lr_factor",
    "make_optimizer",
    "read_recipe",
    "recipe_names",
    "save_checkpoint",
    "train_loop",
]
