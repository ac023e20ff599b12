"""The one training loop (nanoGPT-style): AdamW with decayed matrices only, linear warmup then cosine decay,
gradient-norm clipping, atomic checkpoints and exact resume.

What differs between trainers is passed in: ``batch_at(step)`` builds the step's batch (a pure function of the
step, so a resumed run sees the batches an uninterrupted one would) and ``loss_of(model, batch)`` runs the
forward pass. The loop itself draws nothing from any random generator: a trainer's RNG call order is its
model init (before the loop), then whatever ``batch_at`` draws, step after step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from torch import Tensor

from reasonlens.errors import UserError
from reasonlens.train.checkpoint import load_checkpoint, save_checkpoint

Batch = TypeVar("Batch")


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and schedule: AdamW, warmup to ``lr``, cosine decay to ``lr * min_lr_ratio`` at the last step."""

    steps: int
    lr: float
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0

    def validate(self, source: str = "train config") -> "OptimConfig":
        if self.steps < 1:
            raise UserError(f"{source}: steps must be >= 1, got {self.steps}")
        if not self.lr > 0 or not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"{source}: lr must be > 0 and min_lr_ratio in [0, 1] (got {self.lr}, {self.min_lr_ratio})")
        if self.warmup_steps < 0:
            raise UserError(f"{source}: warmup_steps must be >= 0, got {self.warmup_steps}")
        return self


def lr_factor(step: int, steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Fraction of the peak learning rate at ``step``: linear warmup to 1, then cosine decay to ``min_lr_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def learning_rate(step: int, config: OptimConfig) -> float:
    return config.lr * lr_factor(step, config.steps, config.warmup_steps, config.min_lr_ratio)


def make_optimizer(model: torch.nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices (dim >= 2) only, never on norms and biases."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


@dataclass
class LoopOptions:
    """Book-keeping of one run of :func:`train_loop` (none of it changes the trained weights)."""

    label: str = "train"
    checkpoint_dir: Path | None = None  # resume from here when it holds a checkpoint; None: no checkpoints
    run_identity: dict[str, Any] | None = None  # stored in checkpoints; a checkpoint of another run is refused
    checkpoint_every: int = 200
    log_every: int = 10  # steps between history entries
    print_every: int | None = None  # steps between printed loss lines (they land in logs when stdout is no terminal)
    stop_after: int | None = None  # stop after this many steps of this call (checkpointing first)
    quiet: bool = False
    on_step: Callable[[int, float], None] | None = None
    step_info: Callable[[Any], dict[str, Any]] | None = None  # extra history fields of a batch (e.g. its depth r)


@dataclass
class LoopResult:
    steps: int  # optimizer steps done in total (including those before a resume)
    losses: list[float]  # loss of every step run by this call
    history: list[dict] = field(default_factory=list)  # every log_every-th step, across resumes
    seconds: float = 0.0

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


def train_loop(
    model: torch.nn.Module,
    config: OptimConfig,
    batch_at: Callable[[int], Batch],
    loss_of: Callable[[torch.nn.Module, Batch], Tensor],
    options: LoopOptions | None = None,
) -> LoopResult:
    """Train ``model`` for ``config.steps`` optimizer steps (or resume and finish a checkpointed run)."""
    from reasonlens.runs.progress import progress_bar

    options = options or LoopOptions()
    optimizer = make_optimizer(model, config)
    step, history = 0, []
    if options.checkpoint_dir is not None and (options.checkpoint_dir / "trainer_state.json").is_file():
        step, history = load_checkpoint(options.checkpoint_dir, model, optimizer, options.run_identity)
    stop_at = config.steps if options.stop_after is None else min(config.steps, step + options.stop_after)
    started = time.perf_counter()
    losses: list[float] = []
    model.train()
    with progress_bar(transient=options.quiet) as bar:
        task = bar.add_task(options.label, total=config.steps, completed=step, info="")
        while step < stop_at:
            batch = batch_at(step)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, config)
            loss = loss_of(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            extra = options.step_info(batch) if options.step_info else {}
            if step % options.log_every == 0 or step == stop_at:
                history.append(
                    {
                        "step": step,
                        "loss": round(losses[-1], 5),
                        **extra,
                        "grad_norm": round(float(grad_norm), 4),
                        "lr": optimizer.param_groups[0]["lr"],
                    }
                )
            if options.on_step is not None:
                options.on_step(step, losses[-1])
            info = " ".join([f"loss {losses[-1]:.3f}"] + [f"{k}={v}" for k, v in extra.items()])
            bar.update(task, completed=step, info=info)
            if options.print_every and not options.quiet and step % options.print_every == 0:
                recent = losses[-options.print_every :]
                bar.console.log(
                    f"step {step}/{config.steps} loss {sum(recent) / len(recent):.4f} "
                    f"elapsed {time.perf_counter() - started:.0f} s"
                )
            if options.checkpoint_dir is not None and (step % options.checkpoint_every == 0 or step == stop_at):
                save_checkpoint(options.checkpoint_dir, model, optimizer, step, history, options.run_identity)
    model.eval()
    return LoopResult(steps=step, losses=losses, history=history, seconds=time.perf_counter() - started)
