"""Randomized-depth training of the recurrent-depth LM (SPEC B2).

Each optimizer step samples a depth r = 1 + Poisson(rate), rate ~ LogNormal(ln(mean) - sigma^2/2, sigma)
(huginn's sampler, E[rate] = mean), runs r - k core iterations without gradient and the last k with it
(truncated backprop: memory independent of r), and optimises the next-token loss through the toolkit's one
training loop (:func:`reasonlens.train.train_loop`: AdamW, linear warmup then cosine decay, gradient-norm
clipping). bf16 autocast on CUDA, fp32 on CPU.

Checkpoints (`OUT/checkpoint/`, every `checkpoint_every` steps and at the end) hold `model.safetensors` +
`config.json` (loadable by `RecurrentDepthLM.from_pretrained`), `optimizer.safetensors` (AdamW moments and
RNG state) and `trainer_state.json` (step counter, losses). Batches and depths are a pure function of
(seed, step), so a resumed run continues exactly where an uninterrupted one would be.
"""

from __future__ import annotations

import contextlib
import json
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from reasonlens.errors import UserError
from reasonlens.recurrent.config import RecurrentDepthConfig
from reasonlens.recurrent.model import RecurrentDepthLM, sample_depth, split_depth  # noqa: F401  (re-exported)
from reasonlens.runs.io import read_json_object
from reasonlens.train import LoopOptions, OptimConfig, train_loop
from reasonlens.train import lr_factor as schedule_factor
from reasonlens.train.recipes import load_recipe, recipe_names


@dataclass
class TrainConfig:
    """Optimisation settings of `train_recurrent` (the `train` section of a --config JSON)."""

    steps: int = 1000
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    mean_recurrence: float | None = None  # default: the model config's mean_recurrence
    backprop_depth: int | None = None  # default: the model config's mean_backprop_depth
    max_recurrence: int | None = None  # optional cap on sampled r (keeps CPU steps bounded)
    init_scale: float = 1.0
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    data_split: str = "train"
    data_n: int | None = None
    target: str = "solution"  # dataset targets: "solution" (worked) or "direct" (meta["direct_solution"])
    template: str = "raw"
    loss_on_prompt: bool = False

    def validate(self) -> "TrainConfig":
        for name in ("steps", "batch_size", "seq_len", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"train config: {name} must be >= 1, got {getattr(self, name)}")
        self.optim().validate()
        if self.target not in ("solution", "direct"):
            raise UserError(f"train config: target '{self.target}' must be 'solution' or 'direct'")
        return self

    def optim(self) -> OptimConfig:
        """The optimizer and schedule part, as the one training loop takes it."""
        return OptimConfig(
            steps=self.steps,
            lr=self.lr,
            min_lr_ratio=self.min_lr_ratio,
            warmup_steps=self.warmup_steps,
            weight_decay=self.weight_decay,
            betas=(self.beta1, self.beta2),
            grad_clip=self.grad_clip,
        )


def load_train_file(path: str | Path) -> tuple[RecurrentDepthConfig | None, TrainConfig, dict[str, Any]]:
    """Read a --config JSON, or the ``model`` and ``train`` sections of a shipped recurrent recipe by name
    (``reasonlens/recipes/<name>.json``, e.g. ``organism-recurrent``).

    Format: {"model": {huginn config fields} | omitted with "init", "train": {TrainConfig fields}, "init": dir}.
    """
    if not Path(path).is_file() and str(path) in recipe_names(kind="recurrent-organism"):
        recipe = load_recipe(str(path))
        data = {"model": recipe.section("model"), "train": recipe.section("train")}
        return _parse_train_dict(data, recipe.path)
    path = Path(path)
    return _parse_train_dict(read_json_object(path, "training config"), path)


def _parse_train_dict(data: Any, path: Path) -> tuple[RecurrentDepthConfig | None, TrainConfig, dict[str, Any]]:
    if not isinstance(data, dict):
        raise UserError(f"{path}: training config must be a JSON object")
    known = {f.name for f in fields(TrainConfig)}
    train_section = data.get("train", {})
    unknown = set(train_section) - known
    if unknown:
        raise UserError(f"{path}: unknown field(s) in 'train': {', '.join(sorted(unknown))}")
    model_config = RecurrentDepthConfig.from_dict(data["model"], source=f"{path}:model") if "model" in data else None
    if model_config is None and "init" not in data:
        raise UserError(f"{path}: needs a 'model' section or an 'init' model directory")
    return model_config, TrainConfig(**train_section).validate(), {"init": data.get("init")}


# ----------------------------------------------------------------------------------------------- data


@dataclass
class Example:
    ids: list[int]
    loss_from: int  # index of the first token whose prediction is trained


def _examples_from_records(records: list[dict], tokenizer, config: TrainConfig, source: str) -> list[Example]:
    examples = []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for number, record in enumerate(records):
        if "text" in record:
            ids = tokenizer(record["text"], add_special_tokens=False)["input_ids"] + eos
            examples.append(Example(ids, 0))
        elif "prompt" in record and "completion" in record:
            prompt = tokenizer(record["prompt"], add_special_tokens=False)["input_ids"]
            completion = tokenizer(record["completion"], add_special_tokens=False)["input_ids"] + eos
            examples.append(Example(prompt + completion, 0 if config.loss_on_prompt else len(prompt)))
        else:
            raise UserError(f"{source}: record {number + 1} needs 'text' or 'prompt' + 'completion'")
    return examples


def load_examples(data: str, tokenizer, config: TrainConfig) -> list[Example]:
    """Training examples from a JSONL file ({"text"} or {"prompt", "completion"}) or a registered dataset name."""
    path = Path(data)
    if path.is_file():
        records = []
        for number, line in enumerate(path.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"{path}: line {number + 1} is not JSON") from None
        examples = _examples_from_records(records, tokenizer, config, str(path))
    else:
        from reasonlens.data import load_problems, render_prompt

        problems = load_problems(data, split=config.data_split, n=config.data_n)
        records = []
        for problem in problems:
            target = (
                problem.meta.get("direct_solution", problem.solution) if config.target == "direct" else problem.solution
            )
            records.append({"prompt": render_prompt(problem, config.template, tokenizer), "completion": " " + target})
        examples = _examples_from_records(records, tokenizer, config, data)
    if not examples:
        raise UserError(f"--data {data}: no training examples")
    return examples


def make_batch(examples: list[Example], indices: list[int], seq_len: int, pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-padded input ids [B, L] and labels aligned with the logits (label t = token t+1, -100 = no loss)."""
    width = min(seq_len, max(len(examples[i].ids) for i in indices))
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    labels = torch.full((len(indices), width), -100, dtype=torch.long)
    for row, index in enumerate(indices):
        example = examples[index]
        tokens = example.ids[: width + 1]
        inputs = tokens[:-1] if len(tokens) > width else tokens
        ids[row, : len(inputs)] = torch.tensor(inputs)
        targets = torch.tensor(tokens[1:])
        start = max(example.loss_from - 1, 0)
        labels[row, start : len(targets)] = targets[start:]
    return ids, labels


def batch_indices(n_examples: int, batch_size: int, seed: int, step: int) -> list[int]:
    rng = random.Random(seed * 1_000_003 + step)
    return [rng.randrange(n_examples) for _ in range(batch_size)]


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warmup to 1, then cosine decay to min_lr_ratio at the last step (the one trainer's schedule)."""
    return schedule_factor(step, config.steps, config.warmup_steps, config.min_lr_ratio)


# ----------------------------------------------------------------------------------------------- the loop


@dataclass
class DepthBatch:
    """One step's batch and its sampled depth r, split into (iterations without grad, with grad)."""

    ids: Tensor
    labels: Tensor
    r: int
    num_steps: tuple[int, int]


@dataclass
class TrainResult:
    out: Path
    steps: int
    final_loss: float
    seconds: float
    history: list[dict] = field(default_factory=list)


def train_recurrent(
    model_config: RecurrentDepthConfig | None,
    config: TrainConfig,
    data: str,
    out: str | Path,
    init: str | Path | None = None,
    tokenizer=None,
    device: str = "cpu",
    max_steps_this_call: int | None = None,
    quiet: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train (or resume from OUT/checkpoint) and write the final model + tokenizer to OUT.

    `max_steps_this_call` stops early after that many steps (checkpointing first) — used to test resume.
    """
    config.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    if init is not None:
        model = RecurrentDepthLM.from_pretrained(init)
        model_config = model.config
    elif model_config is not None:
        model = RecurrentDepthLM(model_config)
    else:
        raise UserError("train-recurrent: give a model config or an --init model directory")
    model.to(device)
    if tokenizer is None:
        from reasonlens.recurrent.loading import load_tokenizer

        tokenizer = (
            load_tokenizer(init, model_config.vocab_size) if init else load_tokenizer(out, model_config.vocab_size)
        )
        if tokenizer is None:
            raise UserError(f"train-recurrent: vocab_size {model_config.vocab_size} < 259 and no tokenizer given")
    if len(tokenizer) > model_config.vocab_size:
        raise UserError(
            f"train-recurrent: tokenizer has {len(tokenizer)} tokens, model vocab_size is {model_config.vocab_size}"
        )
    examples = load_examples(data, tokenizer, config)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    mean_r = config.mean_recurrence or model_config.mean_recurrence
    backprop = config.backprop_depth or model_config.mean_backprop_depth

    def batch_at(step: int) -> DepthBatch:
        depth_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + step + 17)  # pure in (seed, step)
        r = sample_depth(mean_r, generator=depth_rng)
        if config.max_recurrence is not None:
            r = min(r, config.max_recurrence)
        indices = batch_indices(len(examples), config.batch_size, config.seed, step)
        ids, labels = make_batch(examples, indices, config.seq_len, pad_id)
        return DepthBatch(ids.to(device), labels.to(device), r, split_depth(r, backprop))

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if str(device).startswith("cuda") else None

    def loss_of(model: torch.nn.Module, batch: DepthBatch) -> Tensor:
        with autocast if autocast is not None else contextlib.nullcontext():
            return model(batch.ids, num_steps=batch.num_steps, labels=batch.labels, init_scale=config.init_scale).loss

    options = LoopOptions(
        label="train-recurrent",
        checkpoint_dir=out / "checkpoint",
        run_identity={
            "train": {k: v for k, v in asdict(config).items() if k not in ("checkpoint_every", "log_every")},
            "data": data,
        },
        checkpoint_every=config.checkpoint_every,
        log_every=config.log_every,
        stop_after=max_steps_this_call,
        quiet=quiet,
        on_step=on_step,
        step_info=lambda batch: {"r": batch.r},
    )
    loop = train_loop(model, config.optim(), batch_at, loss_of, options)
    if loop.steps >= config.steps:
        model.save_pretrained(out)
        tokenizer.save_pretrained(str(out))
        (out / "train_config.json").write_text(json.dumps({"train": asdict(config), "data": data}, indent=2))
        with open(out / "train_log.jsonl", "w") as handle:
            for entry in loop.history:
                handle.write(json.dumps(entry) + "\n")
    return TrainResult(
        out=out, steps=loop.steps, final_loss=loop.final_loss, seconds=loop.seconds, history=loop.history
    )
