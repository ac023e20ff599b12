"""Randomized-depth training of the recurrent-depth LM (SPEC B2).

Each optimizer step samples a depth r = 1 + Poisson(rate), rate ~ LogNormal(ln(mean) - sigma^2/2, sigma)
(huginn's sampler, E[rate] = mean), runs r - k core iterations without gradient and the last k with it
(truncated backprop: memory independent of r), and optimises the next-token loss with AdamW, linear warmup
then cosine decay, and gradient-norm clipping. bf16 autocast on CUDA, fp32 on CPU.

Checkpoints (`OUT/checkpoint/`, every `checkpoint_every` steps and at the end) hold `model.safetensors` +
`config.json` (loadable by `RecurrentDepthLM.from_pretrained`), `optimizer.safetensors` (AdamW moments and
RNG state) and `trainer_state.json` (step counter, losses). Batches are a pure function of (seed, step), so a
resumed run continues exactly where an uninterrupted one would be.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from reasonlens.errors import UserError
from reasonlens.recurrent.config import RecurrentDepthConfig
from reasonlens.recurrent.model import RecurrentDepthLM, sample_depth, split_depth  # noqa: F401  (re-exported)


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
        if not self.lr > 0 or not 0 <= self.min_lr_ratio <= 1:
            raise UserError(
                f"train config: lr must be > 0 and min_lr_ratio in [0, 1] (got {self.lr}, {self.min_lr_ratio})"
            )
        if self.target not in ("solution", "direct"):
            raise UserError(f"train config: target '{self.target}' must be 'solution' or 'direct'")
        return self


# Built-in --config presets. "organism-recurrent": the recurrent model organism, trained on its task
# (synthetic-flips:1-8) by `reasonlens organisms train organism-recurrent` (reasonlens.recurrent.organism builds
# its word-level tokenizer first). A one-layer core keeps r = 1 shallow; tiny dims keep a step cheap on 2 CPU
# cores.
PRESETS: dict[str, dict[str, Any]] = {
    "organism-recurrent": {
        "model": {
            "n_embd": 64,
            "n_heads": 4,
            "vocab_size": 416,
            "intermediate_size": 128,
            "block_size": 256,
            "n_layers_in_prelude": 1,
            "n_layers_in_recurrent_block": 1,
            "n_layers_in_coda": 1,
            "mean_recurrence": 6,
            "mean_backprop_depth": 4,
            "rope_base": 10000.0,
        },
        "train": {
            "steps": 3000,
            "batch_size": 32,
            "seq_len": 96,
            "lr": 3e-3,
            "warmup_steps": 50,
            "checkpoint_every": 200,
            "log_every": 50,
            "max_recurrence": 16,
            "target": "direct",
            "data_n": 50000,
            "min_lr_ratio": 0.05,
        },
    },
}


def load_train_file(path: str | Path) -> tuple[RecurrentDepthConfig | None, TrainConfig, dict[str, Any]]:
    """Read a --config JSON (or a preset name from PRESETS).

    Format: {"model": {huginn config fields} | omitted with "init", "train": {TrainConfig fields}, "init": dir}.
    """
    if str(path) in PRESETS and not Path(path).is_file():
        data = json.loads(json.dumps(PRESETS[str(path)]))
        path = Path(str(path))
        return _parse_train_dict(data, path)
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read training config ({exc})") from None
    return _parse_train_dict(data, path)


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
    """Linear warmup to 1, then cosine decay to min_lr_ratio at the last step."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(config.steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------------- checkpoints


def make_optimizer(model: RecurrentDepthLM, config: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


def save_checkpoint(
    directory: Path, model: RecurrentDepthLM, optimizer: torch.optim.Optimizer, step: int, history: list[dict]
) -> None:
    """Model + optimizer (safetensors) + JSON step counter; written to a temp dir then renamed (atomic)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    state = optimizer.state_dict()
    tensors: dict[str, Tensor] = {"rng.torch": torch.get_rng_state()}
    for index, param_state in state["state"].items():
        for key, value in param_state.items():
            value = value if isinstance(value, Tensor) else torch.tensor(value)
            tensors[f"state.{index}.{key}"] = value.detach().contiguous().cpu()
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in state["param_groups"]]
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "param_groups": groups, "history": history}))
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        directory.rename(old)
        tmp.rename(directory)
        for item in old.iterdir():
            item.unlink()
        old.rmdir()
    else:
        tmp.rename(directory)


def load_checkpoint(
    directory: Path, model: RecurrentDepthLM, optimizer: torch.optim.Optimizer
) -> tuple[int, list[dict]]:
    """Restore weights, optimizer and RNG from `directory`; returns (step, history)."""
    directory = Path(directory)
    try:
        trainer = json.loads((directory / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{directory}: unreadable checkpoint ({exc})") from None
    loaded = RecurrentDepthLM.from_pretrained(directory)
    with torch.no_grad():
        own = model.state_dict()
        for name, tensor in loaded.state_dict().items():
            own[name].copy_(tensor)
    tensors = load_file(str(directory / "optimizer.safetensors"))
    per_param: dict[int, dict[str, Tensor]] = {}
    for name, tensor in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            per_param.setdefault(int(index), {})[key] = tensor
    optimizer.load_state_dict({"state": per_param, "param_groups": trainer["param_groups"]})
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return int(trainer["step"]), list(trainer.get("history", []))


# ----------------------------------------------------------------------------------------------- the loop


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
    optimizer = make_optimizer(model, config)
    checkpoint_dir = out / "checkpoint"
    step, history = 0, []
    if (checkpoint_dir / "trainer_state.json").is_file():
        step, history = load_checkpoint(checkpoint_dir, model, optimizer)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if str(device).startswith("cuda") else None

    from reasonlens.runs.progress import progress_bar

    started = time.perf_counter()
    stop_at = config.steps if max_steps_this_call is None else min(config.steps, step + max_steps_this_call)
    model.train()
    loss_value = float("nan")
    with progress_bar(transient=quiet) as bar:
        task = bar.add_task("train-recurrent", total=config.steps, completed=step, info="")
        while step < stop_at:
            depth_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + step + 17)  # pure in (seed, step)
            r = sample_depth(mean_r, generator=depth_rng)
            if config.max_recurrence is not None:
                r = min(r, config.max_recurrence)
            n_no_grad, n_grad = split_depth(r, backprop)
            ids, labels = make_batch(
                examples, batch_indices(len(examples), config.batch_size, config.seed, step), config.seq_len, pad_id
            )
            ids, labels = ids.to(device), labels.to(device)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * lr_factor(step, config)
            if autocast is not None:
                with autocast:
                    loss = model(ids, num_steps=(n_no_grad, n_grad), labels=labels, init_scale=config.init_scale).loss
            else:
                loss = model(ids, num_steps=(n_no_grad, n_grad), labels=labels, init_scale=config.init_scale).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            loss_value = float(loss.detach())
            if step % config.log_every == 0 or step == stop_at:
                history.append(
                    {
                        "step": step,
                        "loss": round(loss_value, 5),
                        "r": r,
                        "grad_norm": round(float(grad_norm), 4),
                        "lr": optimizer.param_groups[0]["lr"],
                    }
                )
            if on_step is not None:
                on_step(step, loss_value)
            bar.update(task, completed=step, info=f"loss {loss_value:.3f} r={r}")
            if step % config.checkpoint_every == 0 or step == stop_at:
                save_checkpoint(checkpoint_dir, model, optimizer, step, history)
    model.eval()
    if step >= config.steps:
        model.save_pretrained(out)
        tokenizer.save_pretrained(str(out))
        (out / "train_config.json").write_text(json.dumps({"train": asdict(config), "data": data}, indent=2))
        with open(out / "train_log.jsonl", "w") as handle:
            for entry in history:
                handle.write(json.dumps(entry) + "\n")
    return TrainResult(
        out=out, steps=step, final_loss=loss_value, seconds=time.perf_counter() - started, history=history
    )
